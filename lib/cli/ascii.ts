/**
 * Plain ASCII for a terminal whose locale is not UTF-8 (LANG=C, POSIX, ISO-8859-1), where the CLI's arrows,
 * dashes and check marks show as mojibake. Only the CLI's own symbols are spelt out, and none the command line
 * holds: a file name given with one ("stories–test.jsonl") is quoted back as given; other characters pass.
 */
const SYMBOLS: Record<string, string> = {
  '→': '->', '←': '<-', '✔': 'ok', '…': '...', '–': '-', '—': '--', '−': '-', '×': 'x', '·': '.',
  '≥': '>=', '≤': '<=', '≠': '!=', '≈': '~', '±': '+/-', '²': '^2', '³': '^3', 'ᵀ': '^T', '√': 'sqrt',
};

/** A function giving text with the CLI's symbols spelt out, but for those in `keep`. */
function asciiSpeller(keep: string): (text: string) => string {
  const spelt = Object.keys(SYMBOLS).filter((c) => !keep.includes(c));
  const pattern = new RegExp(`[${spelt.join('')}]`, 'g');
  return (text) => (spelt.length ? text.replace(pattern, (c) => SYMBOLS[c]!) : text);
}

/** Whether the environment names a locale that is not UTF-8 (unset counts as UTF-8: most terminals are). */
export function asciiOnly(env: NodeJS.ProcessEnv): boolean {
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG;
  return locale !== undefined && locale !== '' && !/utf-?8/i.test(locale);
}

/** Writes to `stream` in plain ASCII (but for the symbols in `keep`) until the returned function restores it. */
export function writeAscii(stream: NodeJS.WriteStream, keep = ''): () => void {
  const write = stream.write;
  const spell = asciiSpeller(keep);
  stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]) {
    return (write as (...a: unknown[]) => boolean).call(this, typeof chunk === 'string' ? spell(chunk) : chunk, ...rest);
  } as typeof stream.write;
  return () => {
    stream.write = write;
  };
}
