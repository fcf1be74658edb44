/**
 * Greedy decoding for smoke tests: appends the arg-max token maxNew times (stopping early at eosId if given).
 * No KV cache: each step reruns the whole sequence, which is fine for the short continuations it is for.
 */
import { FfmergeError, showValue } from '../errors';
import { checkJobOptions, throwIfAborted, type JobOptions } from '../native/job';
import { checkLanguageModel, type Model } from '../model/model';
import { argmaxRows } from '../metrics/accuracy';

/** `onProgress` counts the new tokens (phase 'generate'; done < total when eosId stopped it early). */
export interface GreedyOptions extends JobOptions {
  /** Stop after emitting this token. */
  eosId?: number | undefined;
}

/** The prompt followed by up to maxNew greedily chosen tokens. */
export async function greedy(model: Model, prompt: ArrayLike<number>, maxNew: number, opts: GreedyOptions = {}): Promise<Int32Array> {
  checkLanguageModel(model, 'greedy(model, prompt, maxNew): model');
  const V = model.spec.vocab;
  // a string has a length too: its characters would be read as token 0
  if (typeof prompt !== 'object' || prompt === null || typeof prompt.length !== 'number' || Array.from(prompt).some((t) => !Number.isInteger(t) || t < 0 || t >= V)) {
    throw new FfmergeError('INVALID_ARGUMENT', `greedy(model, prompt, maxNew): prompt must be a list of token ids in 0..${V - 1} (got ${showValue(prompt)})`);
  }
  checkJobOptions(opts, 'greedy(model, prompt, maxNew, options): options', ['eosId']);
  if (prompt.length === 0) throw new FfmergeError('INVALID_ARGUMENT', 'greedy: the prompt must hold at least one token');
  if (!Number.isInteger(maxNew) || maxNew < 0) throw new FfmergeError('INVALID_ARGUMENT', `greedy: maxNew must be a non-negative integer (got ${showValue(maxNew)})`);
  const eos = opts.eosId;
  if (eos !== undefined && (!Number.isInteger(eos) || eos < 0 || eos >= V)) {
    throw new FfmergeError('INVALID_ARGUMENT', `greedy: eosId must be a token id in 0..${V - 1} (got ${showValue(eos)}); it could never stop the generation`);
  }
  // the last step reads the prompt and all but the last new token: refused now, not after the work of the rest
  const positions = model.spec.maxPositions;
  if (maxNew > 0 && positions > 0 && prompt.length + maxNew - 1 > positions) {
    throw new FfmergeError(
      'SEQUENCE_TOO_LONG',
      `greedy: a prompt of ${prompt.length} tokens and ${maxNew} new ones is longer than the model's ${positions} positions: ask for at most ${Math.max(0, positions + 1 - prompt.length)} new tokens`,
    );
  }
  const ids = Array.from(prompt);
  await model.session(async () => {
    for (let step = 0; step < maxNew; step++) {
      throwIfAborted(opts.signal);
      const seq = ids.length;
      const r = await model.forward({ ids: Int32Array.from(ids), batch: 1, seq }, { output: 'logits', signal: opts.signal });
      const last = r.logits.subarray((seq - 1) * V, seq * V);
      const best = argmaxRows(last, V)[0]!;
      ids.push(best);
      opts.onProgress?.({ phase: 'generate', done: step + 1, total: maxNew });
      if (best === eos) break;
    }
  });
  return Int32Array.from(ids);
}
