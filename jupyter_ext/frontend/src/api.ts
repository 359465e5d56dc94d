/**
 * All HTTP calls of the side panel: the ray-deploy server extension's REST API under `/ray-deploy/api/`.
 *
 * The interfaces mirror the Python wire documents of `ray_deploy.documents` (pydantic models whose JSON
 * schema is committed as `ray_deploy/documents.schema.json`) and hold exactly what Python sends: the test
 * fixtures (`test/fixtures/*.json`) are typed by these interfaces and validated against that schema.
 * Requests go through `ServerConnection.makeRequest`, so the XSRF token and the server's auth are sent.
 *
 * Example:
 *   const api = new RayDeployApi();
 *   const { deployments } = await api.listDeployments();
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

/** States a deployment can be in (Ray Serve application states). */
export type DeploymentState =
  | 'RUNNING'
  | 'DEPLOYING'
  | 'DEPLOY_FAILED'
  | 'DELETING'
  | 'UNHEALTHY'
  | 'NOT_STARTED';

/** `GET cluster` (`ClusterDocument`): where the panel's Jupyter server is connected. */
export interface IClusterDocument {
  connected: boolean;
  address: string | null;
  dashboard_url: string;
  endpoint: string;
  nodes: number;
  cpus: number;
  gpus: number;
  local: boolean;
  message: string;
}

/** Replica counts of a deployment (`Replicas`). */
export interface IReplicas {
  current: number;
  target: number;
  min: number | null;
  max: number | null;
  states: Record<string, number>;
}

/** Live traffic numbers over the status window (`Traffic`), as the deployment's Monitor counted them. */
export interface ITraffic {
  qps: number;
  rows_per_s: number;
  p50_ms: number | null;
  p99_ms: number | null;
  requests: number;
  errors: number;
  errors_by_status: Record<string, number>;
  window_s: number;
  /** Request samples the replicas could not hand to the Monitor (not counted above). */
  dropped_samples: number;
}

/** One finished 10 s bucket of a deployment's traffic history (`HistoryPoint`). */
export interface IHistoryPoint {
  /** Start of the bucket, seconds since the epoch. */
  t: number;
  qps: number;
  p50_ms: number | null;
  p99_ms: number | null;
  errors: number;
}

/** Links of a deployment (`Links`). */
export interface ILinks {
  endpoint: string;
  dashboard: string | null;
  mlflow: string | null;
  model_uri: string | null;
}

/** A user-facing option value (numbers, flags, names). */
export type OptionValue = number | string | boolean | null;

/** A drift alarm level (`AlarmLevel`). */
export type AlarmLevel = 'ok' | 'warning' | 'alarm';

/** The drift state of a deployment (`DriftState`): an alarm level, or why there is no verdict yet. */
export type DriftState = AlarmLevel | 'collecting' | 'no_reference';

/** One feature's drift test in one window (`FeatureDrift`); the model's output is the feature `prediction`. */
export interface IFeatureDrift {
  feature: string;
  kind: 'numeric' | 'categorical';
  /** 'ks' (two-sample Kolmogorov-Smirnov) or 'chi2' (chi-square). */
  test: string;
  statistic: number;
  p_value: number | null;
  /** Benjamini-Hochberg adjusted p-value across the window's tests. */
  adjusted_p_value: number | null;
  /** KS D for numeric features, Jensen-Shannon distance for categorical ones (0 = same). */
  effect_size: number;
  /** Population stability index on the reference's bins. */
  psi: number | null;
  /** Wasserstein distance divided by the reference's std (numeric). */
  wasserstein: number | null;
  drifted: boolean;
}

/** One closed window in the drift trend (`DriftTrendPoint`). */
export interface IDriftTrendPoint {
  /** When the window closed, seconds since the epoch. */
  t: number;
  rows: number;
  drifted_features: string[];
  share_drifted: number;
  /** Domain-classifier AUC (reference vs window), 0.5 = indistinguishable. */
  auc: number | null;
  drifted: boolean;
  level: AlarmLevel;
}

/** A change of the drift alarm level, with its window and evidence (`AlarmEvent`). */
export interface IAlarmEvent {
  seq: number;
  /** When the level changed, seconds since the epoch. */
  t: number;
  level: AlarmLevel;
  previous: AlarmLevel;
  version: string | null;
  window_start: number;
  window_end: number;
  rows: number;
  drifted_features: string[];
  auc: number | null;
}

/** Drift of the serving version against its reference, from the last closed window (`DriftSection`). */
export interface IDriftSection {
  state: DriftState;
  /** One line for a person: what drifted, or why there is no verdict yet. */
  message: string;
  version: string | null;
  reference_rows: number;
  /** Rows collected in the open window so far. */
  window_rows: number;
  /** Windows closed since the Monitor started. */
  windows: number;
  last_window_end: number | null;
  drifted: boolean | null;
  drifted_features: string[];
  auc: number | null;
  features: IFeatureDrift[];
  /** The last closed windows, oldest first (at most 50). */
  trend: IDriftTrendPoint[];
  last_alarm: IAlarmEvent | null;
}

/** Data-quality counters of one input field (`FieldQuality`). */
export interface IFieldQuality {
  missing: number;
  type_violations: number;
  out_of_range: number;
  unseen_categories: number;
}

/** Data quality of the traffic: the last closed window and totals since the Monitor started (`QualitySection`). */
export interface IQualitySection {
  /** Rows counted in the last closed window. */
  rows: number;
  rejected_requests: number;
  rejected_by_field: Record<string, number>;
  /** Counters per input field, last closed window. */
  fields: Record<string, IFieldQuality>;
  /** Counters per input field since the Monitor started. */
  totals: Record<string, IFieldQuality>;
}

/** A model metric value (null when it cannot be computed, e.g. AUC with one class). */
export type MetricValue = number | null;

/** Model quality from delayed labels joined to captured predictions (`PerformanceSection`). */
export interface IPerformanceSection {
  task: 'classification' | 'regression' | null;
  /** Predictions with a label in the window. */
  labelled: number;
  /** Seconds of labelled predictions the metrics cover. */
  window_s: number;
  /** accuracy, precision, recall, f1, auc or mae, rmse, r2. */
  metrics: Record<string, MetricValue>;
  by_version: Record<string, Record<string, MetricValue>>;
  /** Feedback request ids that matched no captured prediction, since start. */
  unknown_ids: number;
}

/** How a rollout splits traffic (`RolloutMode`): canary steps, a shadow copy, or an A/B test. */
export type RolloutMode = 'canary' | 'shadow' | 'ab';

/** Where a rollout is (`RolloutState`); promoted, rolled_back, aborted and finished are final. */
export type RolloutState =
  | 'running'
  | 'paused'
  | 'awaiting_approval'
  | 'promoted'
  | 'rolled_back'
  | 'aborted'
  | 'finished';

/** A gate's verdict (`GateResult.status`); waiting: not enough data yet. */
export type GateStatus = 'pass' | 'fail' | 'waiting';

/** What a rollout step decided (`RolloutStep.decision`); running while it lasts. */
export type StepDecision = 'running' | 'advance' | 'promote' | 'rollback' | 'paused' | 'aborted';

/** One gate's verdict at a rollout step, with its evidence (`GateResult`). */
export interface IGateResult {
  /** error_rate, p99_latency, prediction_shift, accuracy or fairness. */
  gate: string;
  status: GateStatus;
  /** The champion's value on the same window. */
  champion: number | null;
  challenger: number | null;
  /** The limit it is compared with. */
  threshold: number | null;
  /** One line for a person. */
  message: string;
}

/** A step of a rollout as it happened (`RolloutStep`). */
export interface IRolloutStep {
  /** Step number, from 0. */
  index: number;
  /** Challenger traffic share during the step. */
  share: number;
  /** Seconds since the epoch. */
  started_at: number;
  /** When it ended, or null while it runs. */
  ended_at: number | null;
  decision: StepDecision;
  /** The gates' verdicts at the end of the step (or so far). */
  gates: IGateResult[];
}

/** One version's traffic during the current rollout step (`VersionTraffic`). */
export interface IVersionTraffic {
  requests: number;
  /** Requests answered with HTTP status >= 500. */
  errors: number;
  error_rate: number | null;
  p50_ms: number | null;
  p99_ms: number | null;
}

/** The deployment's current or last rollout: canary, shadow or A/B test (`RolloutSection`). */
export interface IRolloutSection {
  rollout_id: string;
  mode: RolloutMode;
  state: RolloutState;
  /** The champion version. */
  champion: string;
  /** The challenger version. */
  challenger: string;
  /** The challenger's current share (shadow: the mirrored fraction). */
  share: number;
  /** Current step index. */
  step: number;
  /** The planned shares. */
  steps: number[];
  started_at: number;
  /** When the controller last decided, seconds since the epoch. */
  updated_at: number;
  /** One line for a person: progress, or why it ended. */
  message: string;
  /** Every step so far, oldest first. */
  history: IRolloutStep[];
  /** Per version traffic in the current step. */
  traffic: Record<string, IVersionTraffic>;
  /** Shadow: agreement, latency delta; A/B: metric per arm, difference, CI, p-value, samples needed. */
  report: Record<string, MetricValue>;
}

/** Where a retrain is (`RetrainState`); succeeded, failed and cancelled are final. */
export type RetrainState = 'pending' | 'running' | 'succeeded' | 'failed' | 'cancelled';

/** What happens to a new version that passes the evaluation gate (`RetrainThen`). */
export type RetrainThen = 'register' | 'canary' | 'shadow' | 'deploy';

/** What started a retrain (`RetrainTrigger`). */
export type RetrainTrigger = 'manual' | 'drift' | 'schedule' | 'performance';

/** What an auto-retrain policy watches (`AutoRetrainSection.on`). */
export type AutoRetrainOn = 'drift' | 'schedule' | 'performance';

/** Ray Tune's status of a trial (`RetrainTrial.status`). */
export type TrialStatus = 'PENDING' | 'RUNNING' | 'PAUSED' | 'TERMINATED' | 'ERROR';

/** A hyperparameter value (`ConfigValue`). */
export type ConfigValue = number | string | boolean | null;

/** One Ray Tune trial of a retrain, as it runs (`RetrainTrial`). */
export interface IRetrainTrial {
  trial_id: string;
  status: TrialStatus;
  /** The trial's hyperparameters. */
  config: Record<string, ConfigValue>;
  /** The trial's last reported value of the retrain metric. */
  metric: number | null;
  /** Results reported so far (epochs or boosting rounds). */
  iterations: number;
  /** Whether the scheduler (ASHA) stopped it before its last iteration. */
  stopped_early: boolean;
  /** Why it failed (the exception's last line), or null. */
  error: string | null;
}

/** The best metric so far at a moment of the retrain (`CurvePoint`). */
export interface ICurvePoint {
  /** Seconds since the retrain started. */
  t: number;
  value: number;
}

/** Champion and challenger scored on one data set by the evaluation gate (`GateRow`). */
export interface IGateRow {
  /** held_out: rows no trial trained or was tuned on; recent: the newest labelled captured rows. */
  dataset: 'held_out' | 'recent';
  rows: number;
  champion: number | null;
  challenger: number | null;
  /** challenger - champion, signed so that positive is better. */
  delta: number | null;
}

/** The evaluation gate's verdict (`RetrainGate`). */
export interface IRetrainGate {
  passed: boolean;
  metric: string;
  /** How much better (in the metric's units) the new version must be on recent (else held-out) rows. */
  min_improvement: number;
  /** How much worse it may be on held-out rows when recent rows decide. */
  max_regression: number;
  rows: IGateRow[];
  /** One line for a person: why it passed or failed. */
  reason: string;
}

/** Exactly what a retrain trained and was evaluated on (`RetrainData`). */
export interface IRetrainData {
  rows: number;
  train_rows: number;
  valid_rows: number;
  test_rows: number;
  from_reference: number;
  from_captured: number;
  from_user: number;
  /** SHA-256 of the rows and labels, in order. */
  content_hash: string;
  /** Oldest captured row used, seconds since the epoch, or null. */
  since: number | null;
  until: number | null;
}

/** The deployment's running or last retrain: Ray Tune in a Ray Job (`RetrainSection`). */
export interface IRetrainSection {
  /** Also its Ray Job's submission id. */
  retrain_id: string;
  state: RetrainState;
  trigger: RetrainTrigger;
  started_at: number;
  updated_at: number;
  /** When it ended, or null while it runs. */
  ended_at: number | null;
  time_budget_s: number | null;
  /** What Tune optimizes, e.g. accuracy or rmse. */
  metric: string;
  mode: 'max' | 'min';
  scheduler: 'asha' | 'fifo';
  /** Trials planned. */
  num_samples: number;
  /** The version that served when the retrain started. */
  parent_version: string | null;
  trials: IRetrainTrial[];
  /** Best metric so far over time, oldest first. */
  best_curve: ICurvePoint[];
  best_trial: string | null;
  /** What it trains on, once gathered. */
  data: IRetrainData | null;
  /** The registered new version (alias challenger), or null. */
  version: string | null;
  /** The evaluation gate's verdict, or null before it ran. */
  gate: IRetrainGate | null;
  then: RetrainThen;
  mlflow_run_id: string | null;
  /** One line for a person: progress, or how it ended. */
  message: string;
}

/** One decision of an auto-retrain policy (`RetrainEvent`). */
export interface IRetrainEvent {
  t: number;
  trigger: RetrainTrigger;
  /** started or skipped a retrain on a trigger, or a retrain it started finished. */
  action: 'started' | 'skipped' | 'finished';
  retrain_id: string | null;
  /** One line: why it started or was skipped (cooldown, one running, ...). */
  reason: string;
}

/** The deployment's auto-retrain policy, running in the cluster (`AutoRetrainSection`). */
export interface IAutoRetrainSection {
  on: AutoRetrainOn;
  then: RetrainThen;
  /** Least seconds between two retrains it starts. */
  cooldown_s: number;
  /** The schedule's period (on=schedule), or null. */
  every_s: number | null;
  /** The performance floor (on=performance), or null. */
  min_metric: number | null;
  last_started_at: number | null;
  /** Its recent decisions, oldest first (at most 50). */
  events: IRetrainEvent[];
}

/** The one status document per deployment (`StatusDocument`, built in the cluster). */
export interface IStatusDocument {
  name: string;
  state: DeploymentState | string;
  message: string;
  version: string | null;
  /** The registry alias naming the serving version (e.g. `champion`), or null. */
  alias: string | null;
  /** Every registry alias of the model and the version it names. */
  aliases: Record<string, string>;
  model_kind: string | null;
  url: string;
  replicas: IReplicas;
  traffic: ITraffic | null;
  options: Record<string, OptionValue>;
  links: ILinks;
  deployed_at: number | null;
  updated_at: number;
  /** Traffic history, oldest first (10 s buckets, 30 minutes), kept in the cluster. */
  history: IHistoryPoint[];
  /** Drift against the reference, or null without capture. */
  drift: IDriftSection | null;
  /** Data-quality counters, or null without capture. */
  quality: IQualitySection | null;
  /** Metrics from labels, or null before any. */
  performance: IPerformanceSection | null;
  /** The current or last rollout, or null if none. */
  rollout: IRolloutSection | null;
  /** The running or last retrain, or null if none. */
  retrain: IRetrainSection | null;
  /** The auto-retrain policy, or null if none. */
  auto_retrain: IAutoRetrainSection | null;
}

/** `GET deployments` (`DeploymentList`). */
export interface IDeploymentList {
  deployments: IStatusDocument[];
}

/** One registered model version of a deployment (`VersionDocument`). */
export interface IVersionInfo {
  version: string;
  aliases: string[];
  created_at: number | null;
  run_id: string | null;
}

/** `GET deployments/<name>` (`DeploymentDetails`): the status document plus its versions. */
export interface IDeploymentDetails extends IStatusDocument {
  versions: IVersionInfo[];
}

/** Kinds of long-running actions. */
export type ActionKind = 'scale' | 'delete' | 'promote' | 'rollback';

/** Status of a long-running action. */
export type ActionStatus = 'PENDING' | 'RUNNING' | 'SUCCEEDED' | 'FAILED';

/** A long-running action started by the panel (`ActionDocument`: 202 answers and `GET actions/<id>`). */
export interface IActionDocument {
  action_id: string;
  action: ActionKind;
  name: string;
  status: ActionStatus;
  message: string;
}

/** One entry of the audit log (`AuditEvent`): a change, who made it, and its hash-chain link. */
export interface IAuditEvent {
  /** When it happened, seconds since the epoch. */
  time: number;
  /** The same time as an ISO 8601 string (UTC). */
  time_iso: string;
  /** Who acted: user:<os user>, jupyter:<user>, key:<id>, controller:rollout, controller:auto-retrain. */
  who: string;
  /** What changed: deploy, scale, delete, canary_start, promote, rollback, approve, retrain_started, ... */
  action: string;
  /** The deployment it changed, or null. */
  deployment: string | null;
  /** What was there before, e.g. {version: '3', max_replicas: 1}. */
  before: Record<string, unknown>;
  /** What is there after. */
  after: Record<string, unknown>;
  /** ok, failed: <message>, rolled_back, awaiting_approval, ... */
  outcome: string;
  /** For automatic actions, why (e.g. the failed gate and its numbers). */
  evidence: Record<string, unknown>;
  /** The previous entry's hash (64 zeros for the first). */
  prev_hash: string;
  /** SHA-256 of this entry without `hash`. */
  hash: string;
}

/** Whether the audit log's hash chain is intact (`AuditVerificationDocument`). */
export interface IAuditVerification {
  ok: boolean;
  count: number;
  /** Index of the first entry that does not verify, or null. */
  broken_at: number | null;
  /** Why it does not verify ('' when it does). */
  reason: string;
}

/** `GET deployments/<name>/audit` (`AuditTrail`): a deployment's audit entries and the chain check. */
export interface IAuditTrail {
  deployment: string | null;
  /** Oldest first, the newest 200 at most. */
  entries: IAuditEvent[];
  verification: IAuditVerification;
}

/** The error body of every failed request (`ErrorDocument`). */
export interface IErrorBody {
  error: string;
}

/** The calls the panel makes; the model depends on this interface only. */
export interface IRayDeployApi {
  getCluster(): Promise<IClusterDocument>;
  startCluster(): Promise<IClusterDocument>;
  listDeployments(): Promise<IDeploymentList>;
  getDeployment(name: string): Promise<IDeploymentDetails>;
  scale(name: string, minReplicas: number, maxReplicas: number): Promise<IActionDocument>;
  deleteDeployment(name: string): Promise<IActionDocument>;
  /** Starts promoting the running rollout's challenger to champion. */
  promote(name: string): Promise<IActionDocument>;
  /** Starts rolling back to the previous champion, or to `toVersion`. */
  rollback(name: string, toVersion?: string): Promise<IActionDocument>;
  getAction(actionId: string): Promise<IActionDocument>;
  /** The deployment's audit trail (entries since `since`, seconds since the epoch) and the chain check. */
  getAudit(name: string, since?: number): Promise<IAuditTrail>;
}

/** A failed request: `message` is the server's `error` text (or what went wrong reaching it). */
export class ApiError extends Error {
  /**
   * @param status HTTP status, or 0 when the server could not be reached.
   * @param message What is wrong and what to do.
   */
  constructor(
    readonly status: number,
    message: string
  ) {
    super(message);
    this.name = 'ApiError';
  }
}

/** Base path of the REST API, relative to the Jupyter server's base URL. */
export const API_PATH = 'ray-deploy/api';

/** The REST client (one per panel). */
export class RayDeployApi implements IRayDeployApi {
  /**
   * @param settings Server connection settings; defaults to the page's Jupyter server.
   */
  constructor(settings?: ServerConnection.ISettings) {
    this.settings = settings ?? ServerConnection.makeSettings();
  }

  readonly settings: ServerConnection.ISettings;

  getCluster(): Promise<IClusterDocument> {
    return this.request<IClusterDocument>('GET', 'cluster');
  }

  startCluster(): Promise<IClusterDocument> {
    return this.request<IClusterDocument>('POST', 'cluster/start');
  }

  listDeployments(): Promise<IDeploymentList> {
    return this.request<IDeploymentList>('GET', 'deployments');
  }

  getDeployment(name: string): Promise<IDeploymentDetails> {
    return this.request<IDeploymentDetails>('GET', `deployments/${encodeURIComponent(name)}`);
  }

  scale(name: string, minReplicas: number, maxReplicas: number): Promise<IActionDocument> {
    return this.request<IActionDocument>('POST', `deployments/${encodeURIComponent(name)}/scale`, {
      min_replicas: minReplicas,
      max_replicas: maxReplicas
    });
  }

  deleteDeployment(name: string): Promise<IActionDocument> {
    return this.request<IActionDocument>('DELETE', `deployments/${encodeURIComponent(name)}`);
  }

  promote(name: string): Promise<IActionDocument> {
    return this.request<IActionDocument>('POST', `deployments/${encodeURIComponent(name)}/promote`, {});
  }

  rollback(name: string, toVersion?: string): Promise<IActionDocument> {
    const body = toVersion === undefined ? {} : { to_version: toVersion };
    return this.request<IActionDocument>('POST', `deployments/${encodeURIComponent(name)}/rollback`, body);
  }

  getAction(actionId: string): Promise<IActionDocument> {
    return this.request<IActionDocument>('GET', `actions/${encodeURIComponent(actionId)}`);
  }

  getAudit(name: string, since?: number): Promise<IAuditTrail> {
    const query = since === undefined ? '' : `?since=${encodeURIComponent(String(since))}`;
    return this.request<IAuditTrail>('GET', `deployments/${encodeURIComponent(name)}/audit${query}`);
  }

  /** One JSON request; non-2xx answers become an `ApiError` carrying the server's message. */
  private async request<T>(method: string, path: string, body?: object): Promise<T> {
    const url = URLExt.join(this.settings.baseUrl, API_PATH, path);
    const init: RequestInit = { method };
    if (body !== undefined) {
      init.body = JSON.stringify(body);
      init.headers = { 'Content-Type': 'application/json' };
    }
    let response: Response;
    try {
      response = await ServerConnection.makeRequest(url, init, this.settings);
    } catch (error) {
      const reason = error instanceof Error ? error.message : String(error);
      throw new ApiError(0, `Cannot reach the Jupyter server (${reason}); check that it is still running.`);
    }
    const text = await response.text();
    const data = parseJson(text);
    if (!response.ok) {
      throw new ApiError(response.status, errorMessage(response, data, text));
    }
    if (data === undefined) {
      throw new ApiError(response.status, `${method} ${path} answered with a body that is not JSON: ${clip(text)}`);
    }
    return data as T;
  }
}

function parseJson(text: string): unknown {
  if (!text) {
    return undefined;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

function isErrorBody(data: unknown): data is IErrorBody {
  return typeof data === 'object' && data !== null && typeof (data as IErrorBody).error === 'string';
}

/** Jupyter server's own error body (`APIHandler.write_error`). */
function isJupyterErrorBody(data: unknown): data is { message: string } {
  return typeof data === 'object' && data !== null && typeof (data as { message: unknown }).message === 'string';
}

function errorMessage(response: Response, data: unknown, text: string): string {
  if (isErrorBody(data)) {
    return data.error;
  }
  if (isJupyterErrorBody(data) && data.message) {
    return data.message;
  }
  if (response.status === 404) {
    return 'The ray-deploy server extension is not enabled; run `jupyter server extension enable jupyter_ext` and restart JupyterLab.';
  }
  return `The server answered ${response.status} ${response.statusText}: ${clip(text)}`;
}

function clip(text: string): string {
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}
