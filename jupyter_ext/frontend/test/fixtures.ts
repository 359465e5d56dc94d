/**
 * Documents shaped like the server's answers, and an in-memory `IRayDeployApi` for driving `PanelModel`.
 *
 * The documents are the JSON files in `fixtures/`: typed here by the interfaces of `src/api.ts` (so tsc
 * checks they fit them), and validated by the Python tests against the committed JSON schema of
 * `ray_deploy.documents` (so they are documents Python sends, no more and no less).
 */
import type {
  ActionKind,
  AlarmLevel,
  ActionStatus,
  AutoRetrainOn,
  IActionDocument,
  IAuditTrail,
  IAutoRetrainSection,
  DriftState,
  IClusterDocument,
  IDeploymentDetails,
  IDeploymentList,
  IRayDeployApi,
  IRetrainSection,
  IRolloutSection,
  IStatusDocument,
  IVersionInfo,
  GateStatus,
  RetrainState,
  RetrainThen,
  RetrainTrigger,
  RolloutMode,
  RolloutState,
  StepDecision,
  TrialStatus
} from '../src/api';
import { ApiError } from '../src/api';
import actionJson from './fixtures/action.json';
import auditJson from './fixtures/audit.json';
import clusterDisconnectedJson from './fixtures/cluster-disconnected.json';
import clusterJson from './fixtures/cluster.json';
import errorJson from './fixtures/error.json';
import statusDeployingJson from './fixtures/status-deploying.json';
import statusRetrainFinishedJson from './fixtures/status-retrain-finished.json';
import statusRetrainRunningJson from './fixtures/status-retrain-running.json';
import statusJson from './fixtures/status.json';
import versionsJson from './fixtures/versions.json';

/** The audit trail fixture (`audit.json`, an `AuditTrail` Python sends). */
export function auditTrail(): IAuditTrail {
  return JSON.parse(JSON.stringify(auditJson)) as IAuditTrail;
}

/** A JSON string narrowed to one of the allowed literals (JSON imports widen literals to `string`). */
function oneOf<T extends string>(value: string, allowed: readonly T[]): T {
  const found = allowed.find(item => item === value);
  if (found === undefined) {
    throw new Error(`fixture value '${value}' is not one of ${allowed.join(', ')}`);
  }
  return found;
}

/** `T` as a JSON import types it: string literal unions widen to `string`. */
type Widened<T> = T extends string
  ? string
  : T extends (infer U)[]
    ? Widened<U>[]
    : T extends object
      ? { [K in keyof T]: Widened<T[K]> }
      : T;

const ALARM_LEVELS: AlarmLevel[] = ['ok', 'warning', 'alarm'];
const DRIFT_STATES: DriftState[] = [...ALARM_LEVELS, 'collecting', 'no_reference'];

const ROLLOUT_MODES: RolloutMode[] = ['canary', 'shadow', 'ab'];
const ROLLOUT_STATES: RolloutState[] = [
  'running',
  'paused',
  'awaiting_approval',
  'promoted',
  'rolled_back',
  'aborted',
  'finished'
];
const DECISIONS: StepDecision[] = ['running', 'advance', 'promote', 'rollback', 'paused', 'aborted'];
const GATE_STATUSES: GateStatus[] = ['pass', 'fail', 'waiting'];

/** A rollout section from JSON, its literal fields checked. */
function rolloutFromJson(rollout: Widened<IRolloutSection> | null): IRolloutSection | null {
  if (rollout === null) {
    return null;
  }
  return {
    ...rollout,
    mode: oneOf(rollout.mode, ROLLOUT_MODES),
    state: oneOf(rollout.state, ROLLOUT_STATES),
    history: rollout.history.map(step => ({
      ...step,
      decision: oneOf(step.decision, DECISIONS),
      gates: step.gates.map(gate => ({ ...gate, status: oneOf(gate.status, GATE_STATUSES) }))
    }))
  };
}

const RETRAIN_STATES: RetrainState[] = ['pending', 'running', 'succeeded', 'failed', 'cancelled'];
const RETRAIN_THENS: RetrainThen[] = ['register', 'canary', 'shadow', 'deploy'];
const RETRAIN_TRIGGERS: RetrainTrigger[] = ['manual', 'drift', 'schedule', 'performance'];
const TRIAL_STATUSES: TrialStatus[] = ['PENDING', 'RUNNING', 'PAUSED', 'TERMINATED', 'ERROR'];
const AUTO_RETRAIN_ONS: AutoRetrainOn[] = ['drift', 'schedule', 'performance'];

/** A retrain section from JSON, its literal fields checked. */
function retrainFromJson(retrain: Widened<IRetrainSection> | null): IRetrainSection | null {
  if (retrain === null) {
    return null;
  }
  const { gate } = retrain;
  return {
    ...retrain,
    state: oneOf(retrain.state, RETRAIN_STATES),
    trigger: oneOf(retrain.trigger, RETRAIN_TRIGGERS),
    mode: oneOf(retrain.mode, ['max', 'min'] as const),
    scheduler: oneOf(retrain.scheduler, ['asha', 'fifo'] as const),
    then: oneOf(retrain.then, RETRAIN_THENS),
    trials: retrain.trials.map(trial => ({ ...trial, status: oneOf(trial.status, TRIAL_STATUSES) })),
    gate:
      gate === null
        ? null
        : {
            ...gate,
            rows: gate.rows.map(row => ({ ...row, dataset: oneOf(row.dataset, ['held_out', 'recent'] as const) }))
          }
  };
}

/** An auto-retrain section from JSON, its literal fields checked. */
function autoRetrainFromJson(auto: Widened<IAutoRetrainSection> | null): IAutoRetrainSection | null {
  if (auto === null) {
    return null;
  }
  return {
    ...auto,
    on: oneOf(auto.on, AUTO_RETRAIN_ONS),
    then: oneOf(auto.then, RETRAIN_THENS),
    events: auto.events.map(event => ({
      ...event,
      trigger: oneOf(event.trigger, RETRAIN_TRIGGERS),
      action: oneOf(event.action, ['started', 'skipped', 'finished'] as const)
    }))
  };
}

/** A status document from its JSON fixture, its literal fields checked. */
function statusFromJson(doc: Widened<IStatusDocument>): IStatusDocument {
  const { drift, performance } = doc;
  const alarm = drift?.last_alarm ?? null;
  return {
    ...doc,
    drift:
      drift === null
        ? null
        : {
            ...drift,
            state: oneOf(drift.state, DRIFT_STATES),
            features: drift.features.map(f => ({ ...f, kind: oneOf(f.kind, ['numeric', 'categorical'] as const) })),
            trend: drift.trend.map(point => ({ ...point, level: oneOf(point.level, ALARM_LEVELS) })),
            last_alarm:
              alarm === null
                ? null
                : { ...alarm, level: oneOf(alarm.level, ALARM_LEVELS), previous: oneOf(alarm.previous, ALARM_LEVELS) }
          },
    performance:
      performance === null
        ? null
        : {
            ...performance,
            task: performance.task === null ? null : oneOf(performance.task, ['classification', 'regression'] as const)
          },
    rollout: rolloutFromJson(doc.rollout),
    retrain: retrainFromJson(doc.retrain),
    auto_retrain: autoRetrainFromJson(doc.auto_retrain)
  };
}

/** A deep copy, so a test that changes a document does not change the fixture. */
function copy<T>(value: T): T {
  return structuredClone(value);
}

/** `GET cluster` of a connected local cluster. */
export const CLUSTER: IClusterDocument = clusterJson;
/** `GET cluster` when no cluster answers. */
export const CLUSTER_DISCONNECTED: IClusterDocument = clusterDisconnectedJson;
/**
 * A running deployment 'iris' (champion v2) with traffic, history, a drift warning (petal_length), quality,
 * metrics, and a canary of v3 running its step 2 of 4 (25%).
 */
export const STATUS: IStatusDocument = statusFromJson(statusJson);
/** A deployment 'churn' still deploying: no version, no traffic, no history, no monitoring sections, no rollout. */
export const STATUS_DEPLOYING: IStatusDocument = statusFromJson(statusDeployingJson);
/**
 * 'iris' retraining by hand (no rollout, no policy): 5 of 8 trials started (3 terminated, one stopped early by
 * ASHA, one errored, one running), best accuracy 0.953, 95 s into a 300 s budget.
 */
export const STATUS_RETRAIN_RUNNING: IStatusDocument = statusFromJson(statusRetrainRunningJson);
/**
 * 'iris' after a retrain its drift policy started succeeded: v3 passed the gate (held-out and recent rows) and
 * its canary runs (the rollout of `STATUS`); the policy (on drift → canary, 1 h cooldown) has three events.
 */
export const STATUS_RETRAIN_FINISHED: IStatusDocument = statusFromJson(statusRetrainFinishedJson);
/** The registry versions of 'iris'. */
export const VERSIONS: IVersionInfo[] = versionsJson;
/** A scale action just submitted. */
export const ACTION: IActionDocument = {
  ...actionJson,
  action: oneOf<ActionKind>(actionJson.action, ['scale', 'delete', 'promote', 'rollback']),
  status: oneOf<ActionStatus>(actionJson.status, ['PENDING', 'RUNNING', 'SUCCEEDED', 'FAILED'])
};
/** The body of an error answer. */
export const ERROR: { error: string } = errorJson;

export function clusterDoc(overrides: Partial<IClusterDocument> = {}): IClusterDocument {
  return { ...copy(CLUSTER), ...overrides };
}

/** The running fixture document, renamed to `name` (its URLs follow), with `overrides` applied. */
export function statusDoc(name: string, overrides: Partial<IStatusDocument> = {}): IStatusDocument {
  const doc = copy(STATUS);
  const url = `http://127.0.0.1:8000/v2/models/${name}`;
  return {
    ...doc,
    name,
    url,
    links: {
      ...doc.links,
      endpoint: url,
      dashboard: `http://127.0.0.1:8265/#/serve/applications/${name}`,
      model_uri: `models:/${name}/${doc.version}`
    },
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
    return { ...doc, versions: copy(VERSIONS) };
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

  async getAudit(name: string, since?: number): Promise<IAuditTrail> {
    this.call(since === undefined ? `getAudit ${name}` : `getAudit ${name} ${since}`);
    return { ...auditTrail(), deployment: name };
  }

  async rollback(name: string, toVersion?: string): Promise<IActionDocument> {
    this.call(toVersion === undefined ? `rollback ${name}` : `rollback ${name} ${toVersion}`);
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

  private async nextAction(id: string, action: ActionKind, name: string): Promise<IActionDocument> {
    return { ...copy(ACTION), action_id: id, action, name };
  }
}
