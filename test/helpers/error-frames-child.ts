/**
 * Run by errors.test.ts under `node --expose-gc`: does an FfmergeError a caller keeps hold the objects that were
 * on the stack when it was made (a Model, its caches)? Prints JSON { own, cause }: whether each holder is alive
 * after collection, one thrown as the error and one as its cause's maker.
 */
import { FfmergeError } from '../../lib/errors';

class Holder {
  readonly weights = new Float64Array(1 << 16);
  fail(): never {
    throw new FfmergeError('ABORTED', 'the operation was aborted');
  }
  reason(): Error {
    return new Error('client gone');
  }
}

const kept: unknown[] = [];
let own: WeakRef<Holder> | undefined;
let cause: WeakRef<Holder> | undefined;
let deeper: WeakRef<Holder> | undefined;
let aggregate: WeakRef<Holder> | undefined;
(() => {
  const h = new Holder();
  own = new WeakRef(h);
  try {
    h.fail();
  } catch (e) {
    kept.push(e);
  }
  const c = new Holder();
  cause = new WeakRef(c);
  kept.push(new FfmergeError('ABORTED', 'the operation was aborted', { cause: c.reason() }));
  // a cause's own cause, and an AggregateError's errors (tester EP)
  const d = new Holder();
  deeper = new WeakRef(d);
  kept.push(new FfmergeError('NATIVE_ERROR', 'x', { cause: new Error('outer', { cause: d.reason() }) }));
  const a = new Holder();
  aggregate = new WeakRef(a);
  kept.push(new FfmergeError('NATIVE_ERROR', 'y', { cause: new AggregateError([a.reason()], 'several') }));
})();

const gc = (globalThis as { gc?: () => void }).gc;
if (!gc) throw new Error('run under node --expose-gc');
setTimeout(() => {
  gc();
  setTimeout(() => {
    gc();
    process.stdout.write(JSON.stringify({ own: own?.deref() !== undefined, cause: cause?.deref() !== undefined, deeper: deeper?.deref() !== undefined, aggregate: aggregate?.deref() !== undefined, kept: kept.length }) + '\n');
  }, 20);
}, 20);
