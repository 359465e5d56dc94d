/** Unit tests of model.ts: rows from status documents, validation, action following and PanelModel. */
import {
  ApiError,
  type IActionDocument,
  type IDriftSection,
  type IPerformanceSection,
  type IRolloutSection
} from '../src/api';
import {
  actionSummary,
  badgeFor,
  clusterView,
  driftBadge,
  driftView,
  followAction,
  formatDuration,
  formatMs,
  formatQps,
  formatShare,
  formatStat,
  formatTime,
  NONE,
  PanelModel,
  performanceView,
  qualityCounters,
  rolloutBadge,
  rolloutView,
  snippetFor,
  toRow,
  toRows,
  validateScale,
  versionLabel
} from '../src/model';
import { CLUSTER_DISCONNECTED, clusterDoc, FakeApi, STATUS, STATUS_DEPLOYING, statusDoc, VERSIONS } from './fixtures';

describe('toRow', () => {
  it('renders the numbers of the status document', () => {
    const row = toRow(STATUS);
    expect(row).toEqual({
      name: 'iris',
      state: 'RUNNING',
      badge: 'ok',
      version: 'v2 · champion',
      replicas: '2/2',
      replicaBounds: '1–4',
      qps: '12.3',
      p99: '36 ms',
      message: '',
      drift: {
        state: 'warning',
        kind: 'warn',
        label: 'drift warning',
        title: 'drifted: petal_length; petal_length drifted in 2 of the last 3 windows (KS D 0.31)'
      },
      rollout: {
        mode: 'canary',
        state: 'running',
        kind: 'progress',
        label: 'canary 25%',
        title:
          'v2 → v3 · step 2/4 · running: step 2 of 4: v3 takes 25% of traffic; gates pass so far ' +
          '(prediction shift and accuracy waiting for data)'
      }
    });
  });

  it('shows placeholders when there is no traffic or version yet', () => {
    const row = toRow(STATUS_DEPLOYING);
    expect(row.badge).toBe('progress');
    expect(row.version).toBe(NONE);
    expect(row.qps).toBe(NONE);
    expect(row.p99).toBe(NONE);
    expect(row.replicas).toBe('0/1');
    expect(row.replicaBounds).toBe('');
    expect(row.message).toBe("Deploying app 'churn'.");
    expect(row.drift).toBeNull();
    expect(row.rollout).toBeNull();
  });

  it('shows a version without an alias when no alias names it', () => {
    expect(toRow(statusDoc('fraud', { alias: null, aliases: { champion: '1' } })).version).toBe('v2');
    expect(versionLabel('3', 'champion')).toBe('v3 · champion');
    expect(versionLabel(null, 'champion')).toBe(NONE);
  });

  it('sorts rows by name', () => {
    expect(toRows([statusDoc('b'), statusDoc('a'), statusDoc('c')]).map(r => r.name)).toEqual(['a', 'b', 'c']);
  });
});

describe('formatting', () => {
  it.each([
    ['RUNNING', 'ok'],
    ['DEPLOYING', 'progress'],
    ['DELETING', 'progress'],
    ['DEPLOY_FAILED', 'error'],
    ['UNHEALTHY', 'error'],
    ['NOT_STARTED', 'idle'],
    ['SOMETHING_NEW', 'idle']
  ])('badge of %s is %s', (state, badge) => {
    expect(badgeFor(state)).toBe(badge);
  });

  it('formats rates and latencies by magnitude', () => {
    expect(formatQps(0)).toBe('0.00');
    expect(formatQps(1.234)).toBe('1.23');
    expect(formatQps(250.4)).toBe('250');
    expect(formatQps(Number.NaN)).toBe(NONE);
    expect(formatMs(2.345)).toBe('2.3 ms');
    expect(formatMs(123.6)).toBe('124 ms');
    expect(formatMs(undefined)).toBe(NONE);
  });

  it('quotes the deployment name in the snippet', () => {
    expect(snippetFor('iris')).toBe('ray_deploy.get("iris")');
    expect(snippetFor('a"b')).toBe('ray_deploy.get("a\\"b")');
  });
});

describe('clusterView', () => {
  it('summarises a connected cluster with its dashboard link', () => {
    const view = clusterView(
      clusterDoc({ nodes: 2, cpus: 8, gpus: 1, local: false, address: 'ray://head:10001', message: '' })
    );
    expect(view).toEqual({
      connected: true,
      summary: 'ray://head:10001 · 2 nodes · 8 CPUs · 1 GPU',
      message: '',
      dashboardUrl: 'http://127.0.0.1:8265',
      canStart: false
    });
  });

  it('offers to start a cluster when not connected', () => {
    const view = clusterView(CLUSTER_DISCONNECTED);
    expect(view.connected).toBe(false);
    expect(view.canStart).toBe(true);
    expect(view.summary).toBe('not connected');
    expect(view.message).toBe(CLUSTER_DISCONNECTED.message);
    expect(view.dashboardUrl).toBeNull();
  });
});

describe('validateScale', () => {
  it('accepts whole numbers with min <= max', () => {
    expect(validateScale('0', '3')).toEqual({ ok: true, min: 0, max: 3 });
    expect(validateScale(' 2 ', '2')).toEqual({ ok: true, min: 2, max: 2 });
  });

  it.each([
    ['3', '2', 'min replicas must be <= max replicas (min 3, max 2)'],
    ['', '2', 'min replicas is required: enter a whole number from 0 to 1000'],
    ['1', '', 'max replicas is required: enter a whole number from 1 to 1000'],
    ['1.5', '2', "min replicas must be a whole number, got '1.5'"],
    ['abc', '2', "min replicas must be a whole number, got 'abc'"],
    ['-1', '2', 'min replicas must be between 0 and 1000, got -1'],
    ['0', '0', 'max replicas must be between 1 and 1000, got 0'],
    ['1', '1001', 'max replicas must be between 1 and 1000, got 1001']
  ])('rejects min=%j max=%j', (min, max, error) => {
    expect(validateScale(min, max)).toEqual({ ok: false, error });
  });
});

describe('followAction', () => {
  function action(status: IActionDocument['status'], message = ''): IActionDocument {
    return { action_id: 'a-scale', action: 'scale', name: 'iris', status, message };
  }

  it('polls until the action finishes', async () => {
    const api = new FakeApi();
    api.actions.set('a-scale', [action('RUNNING'), action('RUNNING'), action('SUCCEEDED', 'now 1-3 replicas')]);
    const sleeps: number[] = [];
    const done = await followAction(api, action('PENDING'), {
      intervalMs: 250,
      sleep: async ms => {
        sleeps.push(ms);
      }
    });
    expect(done.status).toBe('SUCCEEDED');
    expect(sleeps).toEqual([250, 250, 250]);
    expect(actionSummary(done)).toBe("Scaled 'iris': now 1-3 replicas");
  });

  it('follows promote and rollback actions like scale', async () => {
    const api = new FakeApi();
    const promote = await api.promote('iris');
    expect(promote).toMatchObject({ action_id: 'a-promote', action: 'promote', name: 'iris', status: 'PENDING' });
    const promoted: IActionDocument = { ...promote, status: 'SUCCEEDED', message: 'promoted iris: version 3 is the champion' };
    api.actions.set('a-promote', [promoted]);
    const done = await followAction(api, promote, { sleep: async () => undefined });
    expect(actionSummary(done)).toBe("Promoted 'iris': promoted iris: version 3 is the champion");
    const rollback = await api.rollback('iris', '2');
    api.actions.set('a-rollback', [{ ...rollback, status: 'FAILED', message: 'no previous champion to roll back to' }]);
    const failed = await followAction(api, rollback, { sleep: async () => undefined });
    expect(actionSummary(failed)).toBe("rollback of 'iris' failed: no previous champion to roll back to");
    api.actions.set('a-rollback', [{ ...rollback, status: 'SUCCEEDED', message: '' }]);
    expect(actionSummary(await followAction(api, rollback, { sleep: async () => undefined }))).toBe(
      "Rolled back 'iris'"
    );
    expect(api.calls).toEqual([
      'promote iris',
      'getAction a-promote',
      'rollback iris 2',
      'getAction a-rollback',
      'getAction a-rollback'
    ]);
  });

  it('returns a failed action with its message', async () => {
    const api = new FakeApi();
    api.actions.set('a-scale', [action('FAILED', 'not enough CPUs for 3 replicas')]);
    const done = await followAction(api, action('PENDING'), { sleep: async () => undefined });
    expect(done.status).toBe('FAILED');
    expect(actionSummary(done)).toBe("scale of 'iris' failed: not enough CPUs for 3 replicas");
  });

  it('gives up after the timeout with a clear message', async () => {
    const api = new FakeApi();
    api.actions.set('a-scale', [action('RUNNING')]);
    let clock = 0;
    const follow = followAction(api, action('PENDING'), {
      intervalMs: 1000,
      timeoutMs: 5000,
      now: () => clock,
      sleep: async ms => {
        clock += ms;
      }
    });
    await expect(follow).rejects.toThrow("scale of 'iris' is still RUNNING after 5 s; check the Ray dashboard");
  });
});

describe('PanelModel', () => {
  it('loads the cluster and sorted rows', async () => {
    const api = new FakeApi();
    api.deployments = [statusDoc('iris'), statusDoc('churn')];
    const model = new PanelModel(api);
    let changes = 0;
    model.subscribe(() => changes++);
    await model.refresh();
    expect(model.clusterView?.summary).toBe('local · 1 node · 2 CPUs');
    expect(model.rows.map(r => r.name)).toEqual(['churn', 'iris']);
    expect(model.error).toBeNull();
    expect(changes).toBe(1);
  });

  it('does not list deployments when the cluster is down', async () => {
    const api = new FakeApi();
    api.cluster = clusterDoc({ connected: false, message: 'not connected' });
    api.deployments = [statusDoc('iris')];
    const model = new PanelModel(api);
    await model.refresh();
    expect(model.rows).toEqual([]);
    expect(api.calls).toEqual(['getCluster']);
    await model.startCluster();
    await model.refresh();
    expect(model.rows.map(r => r.name)).toEqual(['iris']);
  });

  it('loads details of the selection and drops a deleted selection', async () => {
    const api = new FakeApi();
    api.deployments = [statusDoc('iris'), statusDoc('churn')];
    const model = new PanelModel(api);
    await model.refresh();
    await model.select('iris');
    expect(model.details?.versions).toEqual(VERSIONS);
    expect(model.details?.history).toEqual(STATUS.history);
    expect(model.selectedDocument?.name).toBe('iris');

    api.deployments = [statusDoc('churn')];
    await model.refresh();
    expect(model.selected).toBeNull();
    expect(model.details).toBeNull();
  });

  it('reports a persisting error once and clears it on recovery', async () => {
    const api = new FakeApi();
    const model = new PanelModel(api);
    const reported: string[] = [];
    model.onError = message => reported.push(message);
    api.fail = new ApiError(503, 'the Ray cluster does not answer; start it with `ray-deploy up`');
    await expect(model.refresh()).rejects.toThrow('the Ray cluster does not answer');
    await expect(model.refresh()).rejects.toThrow('the Ray cluster does not answer');
    expect(reported).toEqual(['the Ray cluster does not answer; start it with `ray-deploy up`']);
    expect(model.error).toBe('the Ray cluster does not answer; start it with `ray-deploy up`');

    api.fail = null;
    await model.refresh();
    expect(model.error).toBeNull();
    api.fail = new ApiError(503, 'the Ray cluster does not answer; start it with `ray-deploy up`');
    await expect(model.refresh()).rejects.toThrow();
    expect(reported).toHaveLength(2);
  });
});

/** The fixture's drift section with `changes` (a copy). */
function drift(changes: Partial<IDriftSection> = {}): IDriftSection {
  return { ...structuredClone(STATUS.drift as IDriftSection), ...changes };
}

describe('drift', () => {
  it.each([
    ['ok', 'ok', 'drift ok'],
    ['warning', 'warn', 'drift warning'],
    ['alarm', 'error', 'drift alarm'],
    ['collecting', 'idle', 'drift collecting'],
    ['no_reference', 'idle', 'drift no reference']
  ] as const)('badge of %s is %s', (state, kind, label) => {
    const badge = driftBadge(drift({ state, drifted_features: [], message: '' }));
    expect(badge).toEqual({ state, kind, label, title: `drift ${state}` });
  });

  it('has no badge without a drift section', () => {
    expect(driftBadge(null)).toBeNull();
    expect(driftView(null)).toBeNull();
    expect(toRow(statusDoc('iris', { drift: null })).drift).toBeNull();
  });

  it('lists the drifted features with effect sizes, the AUC, windows and the alarm', () => {
    const view = driftView(STATUS.drift);
    expect(view?.badge.kind).toBe('warn');
    expect(view?.message).toBe('petal_length drifted in 2 of the last 3 windows (KS D 0.31)');
    expect(view?.drifted).toEqual([{ feature: 'petal_length', effect: 'KS D 0.31' }]);
    expect(view?.auc).toBe('0.64');
    expect(view?.windows).toBe('3 closed · 57 rows in the open one');
    expect(view?.alarm).toBe(`warning since ${formatTime(1700000090)} (was ok)`);
  });

  it('orders drifted features by effect size and names the categorical effect', () => {
    const section = drift({ drifted_features: ['prediction', 'petal_length', 'sepal_width'] });
    section.features = section.features.map(f => ({ ...f, drifted: ['prediction', 'petal_length'].includes(f.feature) }));
    section.features[4] = { ...section.features[4], effect_size: 0.45 };
    expect(driftView(section)?.drifted).toEqual([
      { feature: 'prediction', effect: 'JS distance 0.45' },
      { feature: 'petal_length', effect: 'KS D 0.31' },
      { feature: 'sepal_width', effect: NONE }
    ]);
  });

  it('says why there is no verdict yet', () => {
    const view = driftView(
      drift({
        state: 'collecting',
        message: 'collecting the first window: 57 of 200 rows',
        windows: 0,
        drifted: null,
        drifted_features: [],
        auc: null,
        features: [],
        trend: [],
        last_alarm: null
      })
    );
    expect(view?.badge.label).toBe('drift collecting');
    expect(view?.drifted).toEqual([]);
    expect(view?.auc).toBe(NONE);
    expect(view?.alarm).toBeNull();
  });
});

describe('quality and performance', () => {
  it('lists only the non-zero quality counters, by field', () => {
    expect(qualityCounters(STATUS.quality!)).toEqual([
      { field: 'petal_length', counter: 'out of range', window: 14, total: 21 },
      { field: 'petal_width', counter: 'type violations', window: 0, total: 1 },
      { field: 'sepal_width', counter: 'missing', window: 2, total: 3 }
    ]);
  });

  it('shows the computed metrics and the versions', () => {
    const view = performanceView(STATUS.performance!);
    expect(view.summary).toBe('classification · 120 labelled in 1 h');
    expect(view.metrics).toEqual([
      { name: 'accuracy', value: '0.925' },
      { name: 'precision', value: '0.93' },
      { name: 'recall', value: '0.92' },
      { name: 'f1', value: '0.924' }
    ]);
    expect(view.versions).toEqual([
      { version: 'v3', metrics: 'accuracy 0.95 · precision 0.95 · recall 0.95 · f1 0.95' },
      { version: 'v2', metrics: 'accuracy 0.925 · precision 0.93 · recall 0.92 · f1 0.924' }
    ]);
    expect(view.unknownIds).toBe(2);
  });

  it('shows regression metrics of one version without a version list', () => {
    const regression: IPerformanceSection = {
      task: 'regression',
      labelled: 8,
      window_s: 90,
      metrics: { mae: 0.51234, rmse: 0.75, r2: null },
      by_version: { '3': { mae: 0.51234, rmse: 0.75, r2: null } },
      unknown_ids: 0
    };
    const view = performanceView(regression);
    expect(view.summary).toBe('regression · 8 labelled in 1.5 min');
    expect(view.metrics).toEqual([
      { name: 'mae', value: '0.512' },
      { name: 'rmse', value: '0.75' }
    ]);
    expect(view.versions).toEqual([]);
  });

  it('formats statistics and durations', () => {
    expect(formatStat(0.92456)).toBe('0.925');
    expect(formatStat(1234.5)).toBe('1230');
    expect(formatStat(null)).toBe(NONE);
    expect(formatStat(Number.NaN)).toBe(NONE);
    expect(formatDuration(30)).toBe('30 s');
    expect(formatDuration(7200)).toBe('2 h');
  });
});

/** The fixture's rollout section with `changes` (a copy). */
function rollout(changes: Partial<IRolloutSection> = {}): IRolloutSection {
  return { ...structuredClone(STATUS.rollout as IRolloutSection), ...changes };
}

describe('rollout', () => {
  it('shows a running canary as a badge with its step in the tooltip', () => {
    expect(rolloutBadge(STATUS.rollout)?.label).toBe('canary 25%');
    expect(rolloutBadge(STATUS.rollout)?.title.startsWith('v2 → v3 · step 2/4 · running: ')).toBe(true);
    expect(rolloutBadge(rollout({ state: 'paused' }))?.kind).toBe('warn');
    expect(rolloutBadge(rollout({ mode: 'shadow', share: 1, steps: [1], step: 0 }))?.label).toBe('shadow 100%');
    expect(rolloutBadge(rollout({ mode: 'ab', share: 0.5 }))?.title).toMatch(/^v2 → v3 · running: /);
    expect(rolloutBadge(rollout({ mode: 'ab', share: 0.5 }))?.label).toBe('A/B 50%');
  });

  it.each(['promoted', 'rolled_back', 'aborted', 'finished'] as const)('has no badge once %s', state => {
    expect(rolloutBadge(rollout({ state }))).toBeNull();
    expect(rolloutView(rollout({ state })).canPromote).toBe(false);
  });

  it('has no badge without a rollout', () => {
    expect(rolloutBadge(null)).toBeNull();
    expect(toRow(statusDoc('iris', { rollout: null })).rollout).toBeNull();
  });

  it('shows the steps with their gates, the split and traffic per version', () => {
    const view = rolloutView(STATUS.rollout as IRolloutSection);
    expect(view.title).toBe('canary v2 → v3');
    expect(view.split).toBe('v2 75% · v3 25%');
    expect(view.steps.map(s => [s.label, s.share, s.progress, s.decision])).toEqual([
      ['1', '5%', 'done', 'advance'],
      ['2', '25%', 'current', 'running'],
      ['3', '50%', 'pending', ''],
      ['4', '100%', 'pending', '']
    ]);
    expect(view.steps[1].gates.map(g => `${g.mark} ${g.gate}`)).toEqual([
      '✓ error_rate',
      '✓ p99_latency',
      '… prediction_shift',
      '… accuracy'
    ]);
    expect(view.steps[1].gates[2].title).toBe('waiting for requests: 31 of 50 for v3');
    expect(view.steps[3].gates).toEqual([]);
    expect(view.traffic).toEqual([
      { version: 'v2', role: 'champion', requests: '94', errorRate: '1.06%', p50: '3.2 ms', p99: '36 ms' },
      { version: 'v3', role: 'challenger', requests: '31', errorRate: '0%', p50: '3.6 ms', p99: '41 ms' }
    ]);
    expect(view.report).toEqual([]);
    expect([view.canPromote, view.canRollback, view.final]).toEqual([true, true, false]);
  });

  it('shows a shadow with its one step and report, and a failed gate', () => {
    const section = rollout({
      mode: 'shadow',
      share: 0.5,
      steps: [0.5],
      step: 0,
      report: { agreement: 0.9712, p99_delta_ms: 4.25, samples: null }
    });
    section.history = [
      {
        ...section.history[0],
        share: 0.5,
        ended_at: 1700000040,
        decision: 'rollback',
        gates: [{ ...section.history[0].gates[0], status: 'fail', message: 'error rate 0.09 vs 0.01' }]
      }
    ];
    section.state = 'rolled_back';
    const view = rolloutView(section);
    expect(view.split).toBe('v2 serves all · v3 gets a copy of 50%');
    expect(view.steps).toEqual([
      {
        label: '1',
        share: '50%',
        progress: 'done',
        decision: 'rollback',
        gates: [{ gate: 'error_rate', status: 'fail', mark: '✗', title: 'error rate 0.09 vs 0.01' }]
      }
    ]);
    expect(view.report).toEqual([
      { name: 'agreement', value: '0.971' },
      { name: 'p99_delta_ms', value: '4.25' },
      { name: 'samples', value: NONE }
    ]);
    expect(view.final).toBe(true);
  });

  it('formats shares', () => {
    expect(formatShare(0.05)).toBe('5%');
    expect(formatShare(0.125)).toBe('12.5%');
    expect(formatShare(1)).toBe('100%');
  });
});
