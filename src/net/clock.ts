/**
 * Time is injected: protocol and traversal code never reads a global clock. `SystemClock` is for
 * composition roots; `VirtualClock` drives the virtual network and reducer tests without sleeping.
 */
export interface Timer {
  clear(): void;
}

export interface Clock {
  /** Monotonic milliseconds. */
  now(): number;
  /**
   * Wall-clock milliseconds since the Unix epoch, for times another party reads (the expiry in a
   * TURN REST username). Never for measuring intervals: it can jump.
   */
  epochMs(): number;
  setTimeout(fn: () => void, delayMs: number): Timer;
}

/** Resolves after `delayMs` on `clock`; rejects with the signal's reason when aborted. */
export function sleep(clock: Clock, delayMs: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason);
      return;
    }
    const onAbort = (): void => {
      timer.clear();
      reject(signal?.reason);
    };
    const timer = clock.setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, delayMs);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export class SystemClock implements Clock {
  now(): number {
    return performance.now();
  }

  epochMs(): number {
    return Date.now();
  }

  setTimeout(fn: () => void, delayMs: number): Timer {
    const handle = setTimeout(fn, Math.max(0, delayMs));
    return { clear: () => clearTimeout(handle) };
  }
}

interface PendingTimer {
  readonly atMs: number;
  readonly seq: number;
  readonly fn: () => void;
  cleared: boolean;
}

/** Lets every queued promise continuation run (setImmediate fires after the microtask queue drains). */
export function flushMicrotasks(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/**
 * A clock that moves only when told to. Timers due at the same time fire in the order they were set,
 * and promise continuations run between timers, so async protocol code behaves as it would in real
 * time, deterministically.
 */
export class VirtualClock implements Clock {
  #nowMs: number;
  #seq = 0;
  readonly #heap: PendingTimer[] = [];
  /** Called when a timer callback throws; the clock keeps going. */
  onTimerError: (error: unknown) => void = (error) => {
    console.error('virtual timer threw:', error);
  };

  /** `epochStartMs`: the wall-clock time at virtual 0 (default 2026-01-01T00:00Z). */
  constructor(
    startMs = 0,
    private readonly epochStartMs = Date.UTC(2026, 0, 1),
  ) {
    this.#nowMs = startMs;
  }

  now(): number {
    return this.#nowMs;
  }

  epochMs(): number {
    return this.epochStartMs + this.#nowMs;
  }

  setTimeout(fn: () => void, delayMs: number): Timer {
    const timer: PendingTimer = {
      atMs: this.#nowMs + Math.max(0, delayMs),
      seq: this.#seq++,
      fn,
      cleared: false,
    };
    heapPush(this.#heap, timer);
    return {
      clear: () => {
        timer.cleared = true;
      },
    };
  }

  /** Number of timers that are set and not cleared. */
  pendingTimers(): number {
    return this.#heap.filter((t) => !t.cleared).length;
  }

  /** Moves time forward by `ms`, firing every timer that falls due on the way. */
  async advance(ms: number): Promise<void> {
    await this.#runUntil(this.#nowMs + ms, () => false);
  }

  /**
   * Runs timers until `done()` is true, or until `maxMs` of virtual time have passed. Returns true
   * when `done()` became true.
   */
  async runUntil(done: () => boolean, maxMs: number): Promise<boolean> {
    return this.#runUntil(this.#nowMs + maxMs, done);
  }

  /** Runs until `promise` settles (or `maxMs` passes, then rejects) and returns its value. */
  async run<T>(promise: Promise<T>, maxMs = 3_600_000): Promise<T> {
    let settled = false;
    const tracked = promise.finally(() => {
      settled = true;
    });
    tracked.catch(() => {});
    const ok = await this.runUntil(() => settled, maxMs);
    if (!ok) throw new Error(`virtual clock: operation did not finish within ${maxMs} ms of virtual time`);
    return tracked;
  }

  async #runUntil(untilMs: number, done: () => boolean): Promise<boolean> {
    await flushMicrotasks();
    for (;;) {
      if (done()) return true;
      const top = this.#heap[0];
      if (!top || top.atMs > untilMs) break;
      heapPop(this.#heap);
      if (top.cleared) continue;
      this.#nowMs = top.atMs;
      try {
        top.fn();
      } catch (error) {
        this.onTimerError(error);
      }
      await flushMicrotasks();
    }
    if (done()) return true;
    this.#nowMs = Math.max(this.#nowMs, untilMs);
    return false;
  }
}

function before(a: PendingTimer, b: PendingTimer): boolean {
  return a.atMs < b.atMs || (a.atMs === b.atMs && a.seq < b.seq);
}

function heapPush(heap: PendingTimer[], item: PendingTimer): void {
  heap.push(item);
  let i = heap.length - 1;
  while (i > 0) {
    const parent = (i - 1) >> 1;
    if (!before(heap[i]!, heap[parent]!)) break;
    [heap[i], heap[parent]] = [heap[parent]!, heap[i]!];
    i = parent;
  }
}

function heapPop(heap: PendingTimer[]): PendingTimer | undefined {
  const top = heap[0];
  const last = heap.pop();
  if (heap.length > 0 && last) {
    heap[0] = last;
    let i = 0;
    for (;;) {
      const l = 2 * i + 1;
      const r = l + 1;
      let m = i;
      if (l < heap.length && before(heap[l]!, heap[m]!)) m = l;
      if (r < heap.length && before(heap[r]!, heap[m]!)) m = r;
      if (m === i) break;
      [heap[i], heap[m]] = [heap[m]!, heap[i]!];
      i = m;
    }
  }
  return top;
}

/** Calls `fn` every `periodMs` until the returned timer is cleared. */
export function every(clock: Clock, periodMs: number, fn: () => void): Timer {
  let timer: Timer;
  let cleared = false;
  const tick = (): void => {
    if (cleared) return;
    fn();
    if (!cleared) timer = clock.setTimeout(tick, periodMs);
  };
  timer = clock.setTimeout(tick, periodMs);
  return {
    clear: () => {
      cleared = true;
      timer.clear();
    },
  };
}
