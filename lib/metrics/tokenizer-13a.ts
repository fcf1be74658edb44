/**
 * The mteval-v13a tokenizer as sacreBLEU applies it (its default "13a"), reproduced from the behaviour of
 * sacrebleu/tokenizers/tokenizer_13a.py + tokenizer_re.py: unescape a few HTML entities, then split off
 * ASCII punctuation and symbols, periods and commas (unless between digits), and dashes after a digit.
 */
import { FfmergeError, showValue } from '../errors';
import { pySplit } from './text-utils';

// ASCII symbols and punctuation: { | } ~, [ \ ] ^ _ `, space ! " # $ % &, ( ) * +, : ; < = > ? @, /
const SYMBOLS = /([{-~[-` -&(-+:-@/])/g;
const PERIOD_COMMA_AFTER_NON_DIGIT = /([^0-9])([.,])/g;
const PERIOD_COMMA_BEFORE_NON_DIGIT = /([.,])([^0-9])/g;
const DASH_AFTER_DIGIT = /([0-9])(-)/g;

/** sacreBLEU's default '13a' tokenization of one line (the mteval-v13a rules), as corpusBleu uses it. */
export function tokenize13a(line: string): string {
  if (typeof line !== 'string') throw new FfmergeError('INVALID_ARGUMENT', `tokenize13a: line must be a string (got ${showValue(line)})`);
  const s = line
    .replaceAll('<skipped>', '')
    .replaceAll('-\n', '')
    .replaceAll('\n', ' ')
    .replaceAll('&quot;', '"')
    .replaceAll('&amp;', '&')
    .replaceAll('&lt;', '<')
    .replaceAll('&gt;', '>');
  return pySplit(
    ` ${s} `
      .replace(SYMBOLS, ' $1 ')
      .replace(PERIOD_COMMA_AFTER_NON_DIGIT, '$1 $2 ')
      .replace(PERIOD_COMMA_BEFORE_NON_DIGIT, ' $1 $2')
      .replace(DASH_AFTER_DIGIT, '$1 $2 '),
  ).join(' ');
}
