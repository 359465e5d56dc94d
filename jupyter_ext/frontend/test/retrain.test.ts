/** Unit tests of retrain.ts: the details' Retrain block from the retrain fixtures (running, finished + policy). */
import type { IAutoRetrainSection, IRetrainSection } from '../src/api';
import { toRow } from '../src/model';
import {
  autoRetrainView,
  FINAL_RETRAIN_STATES,
  formatElapsed,
  isFinalRetrain,
  lastEventTime,
  retrainView
} from '../src/retrain';
import { STATUS, STATUS_DEPLOYING, STATUS_RETRAIN_FINISHED, STATUS_RETRAIN_RUNNING } from './fixtures';

function running(overrides: Partial<IRetrainSection> = {}): IRetrainSection {
  return { ...structuredClone(STATUS_RETRAIN_RUNNING.retrain as IRetrainSection), ...overrides };
}

function finished(overrides: Partial<IRetrainSection> = {}): IRetrainSection {
  return { ...structuredClone(STATUS_RETRAIN_FINISHED.retrain as IRetrainSection), ...overrides };
}

function policy(overrides: Partial<IAutoRetrainSection> = {}): IAutoRetrainSection {
  return { ...structuredClone(STATUS_RETRAIN_FINISHED.auto_retrain as IAutoRetrainSection), ...overrides };
}

describe('the fixtures', () => {
  it('have retrain sections only where they should', () => {
    expect(STATUS.retrain).toBeNull();
    expect(STATUS.auto_retrain).toBeNull();
    expect(STATUS_DEPLOYING.retrain).toBeNull();
    expect(STATUS_RETRAIN_RUNNING.retrain?.state).toBe('running');
    expect(STATUS_RETRAIN_RUNNING.auto_retrain).toBeNull();
    expect(STATUS_RETRAIN_FINISHED.retrain?.state).toBe('succeeded');
    expect(STATUS_RETRAIN_FINISHED.auto_retrain?.on).toBe('drift');
  });

  it('still make deployment rows', () => {
    expect(toRow(STATUS_RETRAIN_RUNNING).name).toBe('iris');
    expect(toRow(STATUS_RETRAIN_FINISHED).rollout?.label).toBe('canary 25%');
  });
});

describe('formatElapsed', () => {
  it('reads like a clock', () => {
    expect([formatElapsed(0), formatElapsed(42), formatElapsed(185), formatElapsed(3720)]).toEqual([
      '0s',
      '42s',
      '3m 05s',
      '1h 02m'
    ]);
    expect(formatElapsed(-5)).toBe('0s');
  });
});

describe('retrainView', () => {
  it('shows a running retrain: trials done of planned, best metric, elapsed and time left', () => {
    const view = retrainView(running(), 1700000095);
    expect(view).toEqual({
      state: 'running',
      final: false,
      badge: 'progress',
      title: 'manual retrain',
      trials: '4/8 trials done',
      best: 'best accuracy 0.953',
      elapsed: '1m 35s',
      remaining: '3m 25s left of 5m 00s',
      message: '5 of 8 trials started, 3 done, 1 failed; best accuracy 0.953 (trial 3f2a_00001)',
      version: '',
      gate: null
    });
  });

  it('counts elapsed time to now while it runs, and never below zero left', () => {
    expect(retrainView(running(), 1700000400).remaining).toBe('0s left of 5m 00s');
    expect(retrainView(running({ time_budget_s: null }), 1700000095).remaining).toBe('');
    expect(retrainView(running({ best_curve: [], trials: [] }), 1700000001).best).toBe('');
    expect(retrainView(running({ state: 'pending', trials: [] }), 1700000001).badge).toBe('idle');
  });

  it('shows the outcome of a finished retrain with the gate', () => {
    const view = retrainView(finished(), 1800000000);
    expect(view.final).toBe(true);
    expect(view.badge).toBe('ok');
    expect(view.title).toBe('retrain on drift');
    expect(view.elapsed).toBe('7m 40s'); // started_at to ended_at, not to now
    expect(view.remaining).toBe('');
    expect(view.version).toBe('v3 → canary');
    expect(view.message).toBe('v3 registered (accuracy 0.959 vs 0.926 on held-out rows); canary started');
    expect(view.gate).toEqual({
      passed: true,
      label: 'gate passed',
      reason: 'v3 beats v2 by 0.033 accuracy on held-out rows and 0.046 on recent rows (at least 0.01 needed)',
      rows: [
        { dataset: 'held-out', rows: 270, champion: '0.926', challenger: '0.959', delta: '+0.033' },
        { dataset: 'recent', rows: 400, champion: '0.902', challenger: '0.948', delta: '+0.046' }
      ]
    });
  });

  it('shows a failed gate and a cancelled retrain', () => {
    const base = finished();
    const gate = {
      ...(base.gate as NonNullable<IRetrainSection['gate']>),
      passed: false,
      reason: 'v3 is 0.012 worse than v2 on recent rows',
      rows: [{ dataset: 'recent' as const, rows: 400, champion: 0.902, challenger: 0.89, delta: -0.012 }]
    };
    const failed = retrainView(finished({ state: 'failed', gate }), 0);
    expect(failed.badge).toBe('error');
    expect(failed.gate?.label).toBe('gate failed');
    expect(failed.gate?.rows[0].delta).toBe('-0.012');
    const cancelled = retrainView(running({ state: 'cancelled', ended_at: 1700000120 }), 1800000000);
    expect([cancelled.final, cancelled.badge, cancelled.elapsed]).toEqual([true, 'warn', '2m 00s']);
    expect(cancelled.gate).toBeNull();
    expect(isFinalRetrain(running())).toBe(false);
    expect(FINAL_RETRAIN_STATES).toEqual(['succeeded', 'failed', 'cancelled']);
  });
});

describe('autoRetrainView', () => {
  it('shows the policy and its last decision', () => {
    const view = autoRetrainView(policy());
    expect(view.policy).toBe('on drift → canary · cooldown 1h 00m');
    expect(view.lastEvent).toBe('finished: v3 passed the gate; canary started');
    expect(view.lastEventAt).toBe(1699999960);
    expect(lastEventTime(view)).not.toBe('');
  });

  it('names the schedule or the floor, and has no event before the first decision', () => {
    const schedule = autoRetrainView(policy({ on: 'schedule', every_s: 86400, cooldown_s: 600, events: [] }));
    expect(schedule.policy).toBe('on schedule → canary · every 24h 00m · cooldown 10m 00s');
    expect(schedule.lastEvent).toBeNull();
    expect(lastEventTime(schedule)).toBe('');
    const floor = autoRetrainView(policy({ on: 'performance', min_metric: 0.8, then: 'register' }));
    expect(floor.policy).toBe('on performance → register · below 0.8 · cooldown 1h 00m');
  });
});
