/** Unit tests of model.ts: rows from status documents, validation, action following and PanelModel. */
import { ApiError, type IActionDocument } from '../src/api';
import {
  actionSummary,
  badgeFor,
  clusterView,
  followAction,
  formatMs,
  formatQps,
  NONE,
  PanelModel,
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
      version: 'v3 · champion',
      replicas: '2/2',
      replicaBounds: '1–4',
      qps: '12.3',
      p99: '36 ms',
      message: ''
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
  });

  it('shows a version without an alias when no alias names it', () => {
    expect(toRow(statusDoc('fraud', { alias: null, aliases: { champion: '2' } })).version).toBe('v3');
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
