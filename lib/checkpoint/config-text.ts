/**
 * An output's config.json written as the source's own text with ffmerge's keys set, not re-serialised: every
 * other byte stays as it was. JSON.stringify writes `10000.0` as `10000`, which Python reads as an int, and
 * transformers' typed configs may refuse an int where a float is declared (rope_theta, dropout).
 */
import { applyEdits, modify } from 'jsonc-parser';
import { isDeepStrictEqual } from 'node:util';
import { readRegularFileSync, MAX_JSON_FILE_BYTES } from '../files';

/** The edit's layout: the source's own indentation (its first indented key's), two spaces where it has none. */
function formatOf(text: string) {
  const indent = /\n([ \t]+)"/.exec(text)?.[1] ?? '  ';
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  return { formattingOptions: indent.startsWith('\t') ? { insertSpaces: false, tabSize: 1, eol } : { insertSpaces: true, tabSize: indent.length, eol } };
}

/**
 * The text of `config` (the source's config.json with some top-level keys changed) written over `sourceFile`'s
 * text. Where that text does not read back as `config` (the file changed since, or a form the edit cannot keep),
 * `config` is written afresh: the content is what counts, the form is kept where it can be.
 */
export function configText(sourceFile: string, config: Record<string, unknown>): string {
  const fresh = JSON.stringify(config, null, 2) + '\n';
  let text: string;
  try {
    text = readRegularFileSync(sourceFile, 'INVALID_CONFIG', MAX_JSON_FILE_BYTES).replace(/^\uFEFF/, '');
    const source = JSON.parse(text) as Record<string, unknown>;
    const format = formatOf(text);
    for (const k of new Set([...Object.keys(source), ...Object.keys(config)])) {
      if (!isDeepStrictEqual(source[k], config[k])) text = applyEdits(text, modify(text, [k], config[k], format));
    }
    if (!isDeepStrictEqual(JSON.parse(text), config)) return fresh;
  } catch {
    return fresh;
  }
  return text.endsWith('\n') ? text : `${text}\n`;
}
