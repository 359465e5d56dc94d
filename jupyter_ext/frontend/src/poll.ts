/**
 * The panel's refresh loop: a JupyterLab `Poll` that backs off while requests fail and stands by while
 * the panel (or the browser tab) is hidden.
 *
 * Example:
 *   const poll = createRefreshPoll(() => model.refresh(), () => panel.isVisible);
 *   panel.disposed.connect(() => poll.dispose());
 */
import { Poll } from '@lumino/polling';

import { POLL_FREQUENCY } from './model';

/** Interval, backoff and maximum of a refresh poll, in milliseconds. */
export interface IRefreshFrequency {
  interval: number;
  backoff: boolean | number;
  max: number;
}

/**
 * A started poll calling `refresh` every `frequency.interval` ms while `isShown()` is true.
 *
 * Example: `createRefreshPoll(refresh, () => true, { interval: 1000, backoff: true, max: 10000 })`.
 */
export function createRefreshPoll(
  refresh: () => Promise<void>,
  isShown: () => boolean,
  frequency: IRefreshFrequency = POLL_FREQUENCY
): Poll {
  return new Poll({
    name: 'ray-deploy:refresh',
    factory: () => refresh(),
    frequency,
    // A hidden panel stands by; a shown one still stands by when the whole browser tab is hidden.
    standby: () => (isShown() ? 'when-hidden' : true)
  });
}
