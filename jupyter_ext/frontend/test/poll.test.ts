/** The refresh poll (a real `@lumino/polling` Poll): standby while hidden, backoff while failing. */
import type { Poll } from '@lumino/polling';

import { createRefreshPoll } from '../src/poll';

const FREQUENCY = { interval: 5, backoff: true, max: 1000 };

/** Waits for the poll's next tick (an event, not a duration). */
async function nextTick(poll: Poll): Promise<void> {
  await poll.tick;
}

describe('createRefreshPoll', () => {
  let poll: Poll | null = null;
  afterEach(() => {
    poll?.dispose();
    poll = null;
  });

  it('does not refresh while the panel is hidden, and does once it is shown', async () => {
    let shown = false;
    let refreshes = 0;
    poll = createRefreshPoll(
      async () => {
        refreshes++;
      },
      () => shown,
      FREQUENCY
    );
    for (let i = 0; i < 4; i++) {
      await nextTick(poll);
    }
    expect(poll.state.phase).toBe('standby');
    expect(refreshes).toBe(0);

    shown = true;
    await poll.refresh();
    while (poll.state.phase !== 'resolved') {
      await nextTick(poll);
    }
    expect(refreshes).toBeGreaterThan(0);
  });

  it('backs off while refreshing fails', async () => {
    let attempts = 0;
    poll = createRefreshPoll(
      async () => {
        attempts++;
        throw new Error('server down');
      },
      () => true,
      FREQUENCY
    );
    const intervals: number[] = [];
    while (intervals.length < 6) {
      await nextTick(poll);
      if (poll.state.phase === 'rejected') {
        intervals.push(poll.state.interval);
      }
    }
    expect(attempts).toBeGreaterThanOrEqual(6);
    // each wait is drawn between the base interval and growth x the last one: it grows away from the base
    expect(Math.max(...intervals)).toBeGreaterThan(FREQUENCY.interval);
  });

  it('polls every 3 s backing off up to 60 s by default', () => {
    poll = createRefreshPoll(async () => undefined, () => false);
    expect(poll.frequency).toEqual({ interval: 3000, backoff: true, max: 60000 });
  });

  it('returns to the base interval after a success', async () => {
    let fail = true;
    poll = createRefreshPoll(
      async () => {
        if (fail) {
          throw new Error('server down');
        }
      },
      () => true,
      FREQUENCY
    );
    while (poll.state.phase !== 'rejected') {
      await nextTick(poll);
    }
    fail = false;
    while ((poll.state.phase as string) !== 'resolved') {
      await nextTick(poll);
    }
    expect(poll.state.interval).toBe(FREQUENCY.interval);
  });
});
