import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { LiveRequests } from "./live";

type Sent = { state: number; id: number };

function setup(known = () => 0, initial = 0) {
  const sent: Sent[] = [];
  const timeouts: number[] = [];
  const busy: boolean[] = [];
  const live = new LiveRequests<number>(
    {
      delay: 100,
      timeout: 5000,
      send: (state, id) => sent.push({ state, id }),
      knownId: known,
      onTimeout: (id) => timeouts.push(id),
      onBusy: (b) => busy.push(b),
    },
    initial,
  );
  return { live, sent, timeouts, busy };
}

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

describe("LiveRequests", () => {
  it("debounces: a burst of updates sends only the last state, after the quiet time", () => {
    const { live, sent, busy } = setup();
    for (let v = 1; v <= 10; v++) {
      live.update(v);
      vi.advanceTimersByTime(30);
    }
    expect(sent).toEqual([]);
    expect(live.busy).toBe(true);
    vi.advanceTimersByTime(100);
    expect(sent).toEqual([{ state: 10, id: 1 }]);
    expect(live.answer(1)).toBe("current");
    expect(live.settled).toBe(true);
    expect(busy).toEqual([true, false]);
  });

  it("keeps one request in flight and sends the newest waiting state when its answer comes", () => {
    const { live, sent } = setup();
    live.update(1);
    vi.advanceTimersByTime(100);
    live.update(2);
    live.update(3);
    vi.advanceTimersByTime(500);
    expect(sent.map((s) => s.id)).toEqual([1]); // 3 waits for the answer to 1
    expect(live.answer(1)).toBe("current");
    expect(sent).toEqual([
      { state: 1, id: 1 },
      { state: 3, id: 2 },
    ]);
    expect(live.settled).toBe(false);
    expect(live.answer(2)).toBe("current");
    expect(live.settled).toBe(true);
  });

  it("drops answers to older requests", () => {
    const { live, sent } = setup();
    live.update(1);
    live.flush();
    live.answer(1);
    live.update(2);
    live.flush();
    expect(sent.at(-1)).toEqual({ state: 2, id: 2 });
    expect(live.answer(1)).toBe("stale");
    expect(live.inFlightId).toBe(2);
    expect(live.answer(2)).toBe("current");
    expect(live.answer(1)).toBe("stale");
  });

  it("makes every id larger than any id known elsewhere, and accepts newer answers from elsewhere", () => {
    let known = 7;
    const { live, sent } = setup(() => known, 3);
    live.update(1);
    live.flush();
    expect(sent[0].id).toBe(8);
    known = 12; // Python (or another view) set a state of its own while ours was in flight
    expect(live.answer(12)).toBe("current");
    expect(live.answer(8)).toBe("stale"); // ours arrives late: older than what is shown
    live.update(2);
    live.flush();
    expect(sent[1].id).toBe(13);
  });

  it("gives up on an answer that never comes, says so, and sends later input again", () => {
    const { live, sent, timeouts } = setup();
    live.update(1);
    vi.advanceTimersByTime(100);
    live.update(2);
    vi.advanceTimersByTime(4999);
    expect(timeouts).toEqual([]);
    vi.advanceTimersByTime(1);
    expect(timeouts).toEqual([1]);
    expect(sent.map((s) => [s.state, s.id])).toEqual([
      [1, 1],
      [2, 2],
    ]);
    expect(live.answer(2)).toBe("current");
    expect(live.answer(1)).toBe("stale"); // the late answer to the abandoned request
  });

  it("after any burst with out-of-order, delayed answers, the last answer shown is the last state's", () => {
    // a fake kernel answers each request after a random delay; answers may overtake each other
    for (let trial = 0; trial < 20; trial++) {
      let seed = trial + 1;
      const rand = () => ((seed = (seed * 16807) % 2147483647) - 1) / 2147483646;
      const requests = new Map<number, number>();
      let shown: number | null = null;
      let known = 0;
      const live: LiveRequests<number> = new LiveRequests<number>({
        delay: 100,
        timeout: 60_000,
        knownId: () => known,
        send: (state, id) => {
          requests.set(id, state);
          known = Math.max(known, id);
          const reply = () => {
            if (live.answer(id) === "current") shown = requests.get(id)!;
          };
          setTimeout(reply, Math.floor(rand() * 400));
          if (rand() < 0.2) setTimeout(reply, 500 + Math.floor(rand() * 400)); // a duplicate, late
        },
      });
      let last = 0;
      for (let i = 0; i < 200; i++) {
        last = Math.floor(rand() * 1000);
        live.update(last);
        vi.advanceTimersByTime(Math.floor(rand() * 150));
      }
      vi.advanceTimersByTime(10_000);
      expect(live.settled).toBe(true);
      expect(shown).toBe(last);
      live.dispose();
    }
  });

  it("dispose stops its timers: nothing is sent afterwards", () => {
    const { live, sent } = setup();
    live.update(1);
    live.dispose();
    vi.advanceTimersByTime(10_000);
    live.update(2);
    live.flush();
    expect(sent).toEqual([]);
    expect(vi.getTimerCount()).toBe(0);
  });
});
