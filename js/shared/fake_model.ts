/** Test helper: a minimal stand-in for anywidget's model that records what a view asks for.
 * Shared by the widgets' unit tests (never bundled: only test files import it). */

type Callback = () => void;

export class FakeModel {
  state: Record<string, unknown>;
  handlers = new Map<string, Set<Callback>>();
  sets: [string, unknown][] = [];
  saves = 0;

  constructor(state: Record<string, unknown>) {
    this.state = { ...state };
  }
  get(key: string): any {
    return this.state[key];
  }
  set(key: string, value: unknown): void {
    this.sets.push([key, value]);
    this.update({ [key]: value });
  }
  /** Change several keys at once, then fire their events (as a kernel message does). */
  update(changes: Record<string, unknown>): void {
    Object.assign(this.state, changes);
    for (const k of Object.keys(changes)) for (const cb of [...(this.handlers.get(`change:${k}`) ?? [])]) cb();
  }
  on(event: string, cb: Callback): void {
    if (!this.handlers.has(event)) this.handlers.set(event, new Set());
    this.handlers.get(event)!.add(cb);
  }
  off(event: string, cb: Callback): void {
    this.handlers.get(event)?.delete(cb);
  }
  save_changes(): void {
    this.saves += 1;
  }
  send(): void {}
  /** How many listeners the view still has on the model (0 after cleanup). */
  listeners(): number {
    return [...this.handlers.values()].reduce((n, s) => n + s.size, 0);
  }
  widget_manager = { get_model: () => Promise.reject(new Error("none")) };
}
