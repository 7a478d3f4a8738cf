/** Redraw once per kernel message: several synced keys change together (tokens + values, labels +
 * values), and each change event would otherwise redraw on its own. */

type AnyEvented = {
  on(event: string, cb: () => void): void;
  off(event: string, cb: () => void): void;
};

/**
 * Listen to `handlers` (`[event, fn]`), running each `fn` at most once per microtask batch, in the order
 * they were first scheduled; when `rebuild` is in a batch, the functions in `skipOnRebuild` are dropped
 * from it (the rebuild redraws everything). Nothing runs after `signal` aborts. Returns a function that
 * removes every listener.
 */
export function bindBatched(
  model: AnyEvented,
  handlers: [string, () => void][],
  signal: AbortSignal,
  rebuild?: () => void,
  skipOnRebuild: (() => void)[] = [],
): () => void {
  let scheduled: Set<() => void> | null = null;
  const batched = (fn: () => void) => () => {
    if (scheduled) {
      scheduled.add(fn);
      return;
    }
    scheduled = new Set([fn]);
    queueMicrotask(() => {
      const todo = scheduled!;
      scheduled = null;
      if (signal.aborted) return;
      if (rebuild && todo.has(rebuild)) for (const f of skipOnRebuild) todo.delete(f);
      for (const f of todo) f();
    });
  };
  const bound = handlers.map(([event, fn]) => [event, batched(fn)] as const);
  for (const [event, fn] of bound) model.on(event, fn);
  return () => {
    for (const [event, fn] of bound) model.off(event, fn);
  };
}
