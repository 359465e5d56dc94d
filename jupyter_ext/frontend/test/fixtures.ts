/**
 * Documents shaped like the server's answers, and an in-memory `IRayDeployApi` for driving `PanelModel`.
 */
import type {
  IActionDocument,
  IClusterDocument,
  IDeploymentDetails,
  IDeploymentList,
  IRayDeployApi,
  IStatusDocument
} from '../src/api';
import { ApiError } from '../src/api';

export function clusterDoc(overrides: Partial<IClusterDocument> = {}): IClusterDocument {
  return {
    connected: true,
    address: '127.0.0.1:6379',
    dashboard_url: 'http://127.0.0.1:8265',
    endpoint: 'http://127.0.0.1:8000',
    nodes: 1,
    cpus: 2,
    gpus: 0,
    local: true,
    message: '',
    ...overrides
  };
}

export function statusDoc(name: string, overrides: Partial<IStatusDocument> = {}): IStatusDocument {
  return {
    name,
    state: 'RUNNING',
    message: '',
    version: '3',
    alias: 'champion',
    model_kind: 'sklearn',
    url: `http://127.0.0.1:8000/v2/models/${name}`,
    replicas: { current: 2, target: 2, min: 1, max: 4, states: { RUNNING: 2 } },
    traffic: {
      qps: 12.345,
      rows_per_s: 40,
      p50_ms: 3.2,
      p99_ms: 35.6,
      requests: 100,
      errors: 1,
      errors_by_status: { '422': 1 },
      window_s: 60
    },
    options: { num_cpus: 1, min_replicas: 1, max_replicas: 4 },
    links: {
      endpoint: `http://127.0.0.1:8000/v2/models/${name}`,
      dashboard: 'http://127.0.0.1:8265/#/serve',
      mlflow: null,
      model_uri: `models:/${name}/3`
    },
    deployed_at: 1700000000,
    updated_at: 1700000100,
    ...overrides
  };
}

/** An in-memory cluster the model talks to; `fail` makes every call throw that error. */
export class FakeApi implements IRayDeployApi {
  cluster: IClusterDocument = clusterDoc();
  deployments: IStatusDocument[] = [];
  actions = new Map<string, IActionDocument[]>();
  fail: ApiError | null = null;
  calls: string[] = [];

  private call(what: string): void {
    this.calls.push(what);
    if (this.fail) {
      throw this.fail;
    }
  }

  async getCluster(): Promise<IClusterDocument> {
    this.call('getCluster');
    return this.cluster;
  }

  async startCluster(): Promise<IClusterDocument> {
    this.call('startCluster');
    this.cluster = clusterDoc();
    return this.cluster;
  }

  async listDeployments(): Promise<IDeploymentList> {
    this.call('listDeployments');
    return { deployments: this.deployments };
  }

  async getDeployment(name: string): Promise<IDeploymentDetails> {
    this.call(`getDeployment ${name}`);
    const doc = this.deployments.find(d => d.name === name);
    if (!doc) {
      throw new ApiError(404, `no deployment named '${name}'`);
    }
    return { ...doc, versions: [{ version: doc.version ?? '1', aliases: [doc.alias], created_at: null, run_id: null }] };
  }

  async scale(name: string, minReplicas: number, maxReplicas: number): Promise<IActionDocument> {
    this.call(`scale ${name} ${minReplicas} ${maxReplicas}`);
    return this.nextAction('a-scale', 'scale', name);
  }

  async deleteDeployment(name: string): Promise<IActionDocument> {
    this.call(`delete ${name}`);
    return this.nextAction('a-delete', 'delete', name);
  }

  async promote(name: string): Promise<IActionDocument> {
    this.call(`promote ${name}`);
    return this.nextAction('a-promote', 'promote', name);
  }

  async rollback(name: string): Promise<IActionDocument> {
    this.call(`rollback ${name}`);
    return this.nextAction('a-rollback', 'rollback', name);
  }

  async getAction(actionId: string): Promise<IActionDocument> {
    this.call(`getAction ${actionId}`);
    const queue = this.actions.get(actionId);
    if (!queue || queue.length === 0) {
      throw new ApiError(404, `no action '${actionId}'`);
    }
    return queue.length > 1 ? (queue.shift() as IActionDocument) : queue[0];
  }

  private async nextAction(id: string, action: IActionDocument['action'], name: string): Promise<IActionDocument> {
    return { action_id: id, action, name, status: 'PENDING', message: '' };
  }
}
