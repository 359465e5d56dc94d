/**
 * The details' Retrain block as data: the running retrain (state, trials done/planned, best metric, elapsed) or
 * the last outcome (message, version, gate passed/failed), and the auto-retrain policy line with its last event.
 *
 * Pure functions of the status document's `retrain` and `auto_retrain` sections (written in the cluster);
 * `panel.tsx` renders them and the tests drive them with the JSON fixtures.
 *
 * Example:
 *   const view = retrainView(doc.retrain, Date.now() / 1000);
 *   view.trials === '4/8 trials done';
 */
import type { IAutoRetrainSection, IRetrainSection, RetrainState } from './api';
import { formatStat, formatTime, NONE } from './model';

/** The badge class of a retrain state (`jp-RayDeploy-badge-<kind>`). */
export type RetrainBadgeKind = 'ok' | 'progress' | 'error' | 'idle' | 'warn';

/** The retrain states after which nothing changes any more. */
export const FINAL_RETRAIN_STATES: readonly RetrainState[] = ['succeeded', 'failed', 'cancelled'];

const STATE_BADGES: Record<RetrainState, RetrainBadgeKind> = {
  pending: 'idle',
  running: 'progress',
  succeeded: 'ok',
  failed: 'error',
  cancelled: 'warn'
};

/** Whether a retrain has ended (succeeded, failed or cancelled). */
export function isFinalRetrain(retrain: IRetrainSection): boolean {
  return FINAL_RETRAIN_STATES.includes(retrain.state);
}

/**
 * Seconds as a short clock-like duration.
 *
 * Example: `formatElapsed(42) === '42s'`, `formatElapsed(185) === '3m 05s'`, `formatElapsed(3720) === '1h 02m'`.
 */
export function formatElapsed(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s}s`;
  }
  if (s < 3600) {
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** A signed metric difference, e.g. `+0.033`. */
function formatDelta(value: number | null): string {
  if (value === null) {
    return NONE;
  }
  const text = formatStat(value);
  return value > 0 ? `+${text}` : text;
}

/** One row of the evaluation gate: champion and challenger on one data set. */
export interface IGateRowView {
  /** "held-out" or "recent". */
  dataset: string;
  rows: number;
  champion: string;
  challenger: string;
  /** Signed, positive is better: "+0.033". */
  delta: string;
}

/** The evaluation gate's verdict. */
export interface IGateView {
  passed: boolean;
  /** "gate passed" or "gate failed". */
  label: string;
  reason: string;
  rows: IGateRowView[];
}

/** The details' Retrain block. */
export interface IRetrainView {
  state: RetrainState;
  final: boolean;
  badge: RetrainBadgeKind;
  /** "manual retrain", "retrain on drift". */
  title: string;
  /** "4/8 trials done". */
  trials: string;
  /** "best accuracy 0.953", or "" before any result. */
  best: string;
  /** "1m 35s" while it runs (to now), or how long it took once final. */
  elapsed: string;
  /** "3m 25s left of 5m 00s" while it runs with a budget, else "". */
  remaining: string;
  message: string;
  /** "v3 → canary" once a version is registered, else "". */
  version: string;
  /** The gate once the retrain is final and the gate ran, else null. */
  gate: IGateView | null;
}

const DATASETS: Record<string, string> = { held_out: 'held-out', recent: 'recent' };

/**
 * The retrain section as the details show it; `now` is seconds since the epoch (elapsed time while it runs).
 *
 * Example: `retrainView(doc.retrain, 1700000095)` is `{ state: 'running', trials: '4/8 trials done', … }`.
 */
export function retrainView(retrain: IRetrainSection, now: number): IRetrainView {
  const final = isFinalRetrain(retrain);
  const done = retrain.trials.filter(t => t.status === 'TERMINATED' || t.status === 'ERROR').length;
  const last = retrain.best_curve[retrain.best_curve.length - 1];
  const elapsed = Math.max(0, (retrain.ended_at ?? now) - retrain.started_at);
  const budget = retrain.time_budget_s;
  const gate = retrain.gate;
  return {
    state: retrain.state,
    final,
    badge: STATE_BADGES[retrain.state],
    title: retrain.trigger === 'manual' ? 'manual retrain' : `retrain on ${retrain.trigger}`,
    trials: `${done}/${retrain.num_samples} trials done`,
    best: last === undefined ? '' : `best ${retrain.metric} ${formatStat(last.value)}`,
    elapsed: formatElapsed(elapsed),
    remaining:
      final || budget === null
        ? ''
        : `${formatElapsed(Math.max(0, budget - elapsed))} left of ${formatElapsed(budget)}`,
    message: retrain.message,
    version: retrain.version === null ? '' : `v${retrain.version} → ${retrain.then}`,
    gate:
      !final || gate === null
        ? null
        : {
            passed: gate.passed,
            label: gate.passed ? 'gate passed' : 'gate failed',
            reason: gate.reason,
            rows: gate.rows.map(row => ({
              dataset: DATASETS[row.dataset] ?? row.dataset,
              rows: row.rows,
              champion: formatStat(row.champion),
              challenger: formatStat(row.challenger),
              delta: formatDelta(row.delta)
            }))
          }
  };
}

/** The auto-retrain policy as the details show it. */
export interface IAutoRetrainView {
  /** "on drift → canary · cooldown 1h 00m" (with "every 1h 00m" or "below 0.8" for schedule/performance). */
  policy: string;
  /** "started: drift alarm on petal_length", or null before any decision. */
  lastEvent: string | null;
  /** When the last decision was made, seconds since the epoch, or null. */
  lastEventAt: number | null;
}

/**
 * The auto-retrain section as one policy line and its last decision.
 *
 * Example: `autoRetrainView(doc.auto_retrain).policy === 'on drift → canary · cooldown 1h 00m'`.
 */
export function autoRetrainView(auto: IAutoRetrainSection): IAutoRetrainView {
  const parts = [`on ${auto.on} → ${auto.then}`];
  if (auto.every_s !== null) {
    parts.push(`every ${formatElapsed(auto.every_s)}`);
  }
  if (auto.min_metric !== null) {
    parts.push(`below ${formatStat(auto.min_metric)}`);
  }
  parts.push(`cooldown ${formatElapsed(auto.cooldown_s)}`);
  const event = auto.events[auto.events.length - 1];
  return {
    policy: parts.join(' · '),
    lastEvent: event === undefined ? null : `${event.action}: ${event.reason}`,
    lastEventAt: event === undefined ? null : event.t
  };
}

/** When the last decision happened, as a local time ("" without one). */
export function lastEventTime(view: IAutoRetrainView): string {
  return view.lastEventAt === null ? '' : formatTime(view.lastEventAt);
}
