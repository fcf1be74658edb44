/**
 * Plain ASCII for a terminal whose locale is not UTF-8 (LANG=C, POSIX, ISO-8859-1): the CLI's arrows, dashes,
 * signs and check marks showed as mojibake there ("M-bM-^\M-^T Reading data", tester DL). Only the CLI's own
 * symbols are spelt out; other characters (a file name's) pass as they are, since they are the user's.
 */
const SYMBOLS: Record<string, string> = {
  '→': '->', '←': '<-', '✔': 'ok', '…': '...', '–': '-', '—': '--', '−': '-', '×': 'x', '·': '.',
  '≥': '>=', '≤': '<=', '≠': '!=', '≈': '~', '±': '+/-', '²': '^2', '³': '^3', 'ᵀ': '^T', '√': 'sqrt',
};
const PATTERN = new RegExp(`[${Object.keys(SYMBOLS).join('')}]`, 'g');

export function toAscii(text: string): string {
  return text.replace(PATTERN, (c) => SYMBOLS[c]!);
}

/** Whether the environment names a locale that is not UTF-8 (unset counts as UTF-8: most terminals are). */
export function asciiOnly(env: NodeJS.ProcessEnv): boolean {
  const locale = env.LC_ALL || env.LC_CTYPE || env.LANG;
  return locale !== undefined && locale !== '' && !/utf-?8/i.test(locale);
}

/** Writes to `stream` in plain ASCII until the returned function restores it. */
export function writeAscii(stream: NodeJS.WriteStream): () => void {
  const write = stream.write;
  stream.write = function (this: NodeJS.WriteStream, chunk: unknown, ...rest: unknown[]) {
    return (write as (...a: unknown[]) => boolean).call(this, typeof chunk === 'string' ? toAscii(chunk) : chunk, ...rest);
  } as typeof stream.write;
  return () => {
    stream.write = write;
  };
}
