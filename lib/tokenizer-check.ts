/**
 * What ffmerge refuses in a tokenizer.json before the tokenizers library reads it: the library takes any JSON,
 * then fails with its own internals ("x.split is not a function") or, worse, encodes every token as id 0
 * (an empty vocabulary, a BPE vocabulary given as a list) and a meaningless perplexity is printed.
 *
 * One function for both places that load a tokenizer: loadTokenizer (lib/tokenizer.ts) and the tokenizer
 * worker (lib/data/tokenize-file.ts), which runs from source text. So it must stay self-contained: no imports,
 * nothing from this module's scope, no helper defined outside it.
 */

/** The first problem of a parsed tokenizer.json, as a sentence starting with `file`; undefined if none. */
export function tokenizerJsonProblem(json: unknown, file: string): string | undefined {
  const show = (v: unknown): string => {
    let s: string;
    try {
      s = v === undefined ? 'undefined' : JSON.stringify(v) ?? String(v);
    } catch {
      s = Array.isArray(v) ? '[…] (nested too deep to show)' : '{…} (nested too deep to show)'; // RangeError: the stack (tester GD)
    }
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  };
  const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
  if (!isObject(json)) return `${file} is not a JSON object (got ${show(json)})`;
  const model = json.model;
  if (!isObject(model)) return `${file} has no "model" object (got ${show(model)})`;
  // The form of vocabulary each model type the library implements reads: a BPE vocabulary given as a list is
  // read without a word and encodes every token as id 0; an unknown type falls back to a lookup of whole words.
  const forms: Record<string, 'object' | 'array'> = { BPE: 'object', WordPiece: 'object', Unigram: 'array' };
  const type = model.type;
  const vocab = model.vocab;
  if (type !== undefined) {
    // (no type: left to the library's own inference, as transformers.js does)
    const form = typeof type === 'string' && Object.hasOwn(forms, type) ? forms[type] : undefined;
    if (!form) return `${file}: model type ${show(type)} is not one ffmerge reads (${Object.keys(forms).join(', ')})`;
    if (form === 'array' ? !Array.isArray(vocab) : !isObject(vocab)) {
      return `${file}: a ${type} model's vocab must be ${form === 'array' ? 'a list of [piece, score]' : 'an object of token → id'} (got ${show(vocab)})`;
    }
  }
  // BPE dropout drops merges at random when encoding (Hugging Face's tokenizers applies it): no fixed tokens
  if (model.dropout !== undefined && model.dropout !== null && model.dropout !== 0) {
    return `${file}: its BPE model has dropout ${show(model.dropout)}, which tokenizes the same text differently each time; ffmerge reads tokenizers without it (set "dropout": null)`;
  }
  const entries = Array.isArray(vocab) ? vocab.length : isObject(vocab) ? Object.keys(vocab).length : 0;
  // a Unigram's unknown piece is a vocabulary index (Hugging Face's tokenizers refuses one outside it at load);
  // past it, unknown text encoded to an id the model has no row for (tester GD)
  const unk = model.unk_id;
  if (type === 'Unigram' && unk !== undefined && unk !== null && !(typeof unk === 'number' && Number.isInteger(unk) && unk >= 0 && unk < entries)) {
    return `${file}: its Unigram model's unk_id ${show(unk)} is not an index of its ${entries}-piece vocabulary`;
  }
  if ((Array.isArray(vocab) || isObject(vocab)) && entries === 0) {
    return `${file}: the model's vocabulary is empty, so every piece of text would be one unknown token`;
  }
  if (type === 'BPE' || (model.merges !== undefined && model.merges !== null)) {
    const merges = model.merges;
    if (!Array.isArray(merges)) return `${file}: a BPE model's merges must be a list (got ${show(merges)})`;
    // Every merge "a b" (older files: the library splits at the first space) or every one ["a", "b"]
    // (tokenizers ≥ 0.20): the library reads the first one's form for all.
    const pairs = Array.isArray(merges[0]);
    const isMerge = (m: unknown) => (pairs ? Array.isArray(m) && m.length === 2 && m.every((p) => typeof p === 'string') : typeof m === 'string' && m.includes(' '));
    const bad = merges.findIndex((m) => !isMerge(m));
    if (bad >= 0) return `${file}: merge ${bad} is ${show(merges[bad])}, not ${pairs ? '["a", "b"]' : '"a b"'}${bad > 0 ? ' (the form of merge 0)' : ''}`;
    // Both parts of a merge, and what it makes, are tokens of the vocabulary, as Hugging Face's tokenizers
    // requires when it builds the model (MergeTokenOutOfVocabulary); the library here drops what it cannot encode.
    if (isObject(vocab)) {
      const prefix = typeof model.continuing_subword_prefix === 'string' ? model.continuing_subword_prefix : '';
      for (let i = 0; i < merges.length; i++) {
        const m = merges[i] as string | [string, string];
        const [a, b] = Array.isArray(m) ? m : [m.slice(0, m.indexOf(' ')), m.slice(m.indexOf(' ') + 1)];
        const made = a + (prefix && b.startsWith(prefix) ? b.slice(prefix.length) : b);
        const missing = [a, b, made].find((t) => !Object.hasOwn(vocab, t));
        if (missing !== undefined) return `${file}: merge ${i} (${show(m)}) ${missing === made ? 'makes' : 'takes'} ${show(missing)}, which is not in the vocabulary (a damaged or mismatched tokenizer.json)`;
      }
    }
  }
  const added = json.added_tokens;
  if (added !== undefined && added !== null && !Array.isArray(added)) return `${file}: added_tokens must be a list (got ${show(added)})`;
  const addedList = Array.isArray(added) ? added : [];
  const badAdded = addedList.findIndex((a) => !isObject(a) || typeof a.content !== 'string');
  if (badAdded >= 0) return `${file}: added token ${badAdded} is ${show(addedList[badAdded])}, not an object with a "content" string`;
  // The library builds per-character tables of every token (about 200 bytes a character): a 50M-character
  // added token ran the process out of heap and killed it (tester GD). Real tokens are at most a few hundred.
  const MAX_TOKEN_CHARS = 4096;
  let long: string | undefined;
  const check = (t: unknown) => {
    if (long === undefined && typeof t === 'string' && t.length > MAX_TOKEN_CHARS) long = t;
  };
  for (const a of addedList as Record<string, unknown>[]) check(a.content);
  if (Array.isArray(vocab)) for (const p of vocab) check(Array.isArray(p) ? p[0] : p);
  else if (isObject(vocab)) for (const t in vocab) check(t);
  if (long !== undefined) return `${file}: a token of ${long.length} characters (${show(long)}) is longer than any real token (at most ${MAX_TOKEN_CHARS} are read): a damaged or hostile tokenizer.json`;
  // Ids must be small non-negative integers, or the library's tables grow with the largest id. Real
  // vocabularies are dense; the bound (4× the entries, plus slack for added tokens) only refuses damage.
  const limit = 4 * (entries + addedList.length) + 1024;
  const badId = (id: unknown) => typeof id !== 'number' || !Number.isInteger(id) || id < 0 || id >= limit;
  const where = `not an integer in 0..${limit - 1} for a vocabulary of ${entries + addedList.length} entries`;
  if (isObject(vocab)) {
    for (const [token, id] of Object.entries(vocab)) if (badId(id)) return `${file}: token ${show(token)} has id ${show(id)}, ${where}`;
  }
  for (const a of addedList as Record<string, unknown>[]) if (badId(a.id)) return `${file}: added token ${show(a.content)} has id ${show(a.id)}, ${where}`;
  // A normalizer runs before any length check, on all of a call's text, so one that grows text is a memory
  // bomb. Real ones grow text at most 2-fold (Llama 2: Prepend "▁", Replace " " by "▁"); the growth of the
  // whole tree, each Replace by characters put per character found, a Prepend by 1 + its length (it is added
  // to every piece), a Sequence the product of its parts, may be at most 4-fold.
  const MAX_GROWTH = 4;
  const MAX_DEPTH = 16;
  const growth = (n: unknown, depth: number): number => {
    if (!isObject(n)) return 1;
    if (depth > MAX_DEPTH) return Infinity; // refused below, not skipped: a deep tree would pass this check

    if (n.type === 'Sequence' && Array.isArray(n.normalizers)) return n.normalizers.reduce((g: number, m: unknown) => g * growth(m, depth + 1), 1);
    if (n.type === 'Prepend' && typeof n.prepend === 'string') return 1 + n.prepend.length;
    if (n.type !== 'Replace' || typeof n.content !== 'string' || !isObject(n.pattern)) return 1;
    const found = typeof n.pattern.String === 'string' ? n.pattern.String.length : 1; // a regex may match one character
    return Math.max(1, n.content.length / Math.max(1, found));
  };
  const g = growth(json.normalizer, 0);
  if (g === Infinity) return `${file}: its normalizer is nested more than ${MAX_DEPTH} Sequences deep`;
  if (g > MAX_GROWTH) return `${file}: its normalizer (Replace, Prepend) would make text up to ${Math.round(g)} times longer before it is tokenized (at most ${MAX_GROWTH}-fold is read)`;
  return undefined;
}
