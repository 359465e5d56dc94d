/**
 * The side panel's logic, kept outside React so jest can drive it: API documents become view rows,
 * scale inputs are validated, actions are followed to their end, and `PanelModel` holds what the panel
 * shows and refreshes it from the API.
 *
 * Nothing here computes its own numbers: every figure is formatted from the status document.
 *
 * Example:
 *   const model = new PanelModel(new RayDeployApi());
 *   await model.refresh();
 *   model.rows.map(row => `${row.name} ${row.replicas}`); // ['iris 2/2']
 */
import type {
  DriftState,
  GateStatus,
  IActionDocument,
  IClusterDocument,
  IDeploymentDetails,
  IDriftSection,
  IFieldQuality,
  IPerformanceSection,
  IQualitySection,
  IRayDeployApi,
  IRolloutSection,
  IStatusDocument,
  RolloutMode,
  RolloutState
} from './api';

/** Colour class of a state badge. */
export type BadgeKind = 'ok' | 'progress' | 'error' | 'idle';

/** One deployment as the list shows it. */
export interface IDeploymentRow {
  name: string;
  state: string;
  badge: BadgeKind;
  /** "v3 · champion", "v3" or "—". */
  version: string;
  /** "current/target", e.g. "2/2". */
  replicas: string;
  /** "min–max" bounds of the autoscaler, e.g. "1–4", or "" when unknown. */
  replicaBounds: string;
  qps: string;
  p99: string;
  message: string;
  /** The drift badge, or null when the document has no drift section (capture off). */
  drift: IDriftBadge | null;
  /** The rollout badge ("canary 25%"), or null when no rollout runs. */
  rollout: IRolloutBadge | null;
}

/** Placeholder for a value the document does not have. */
export const NONE = '—';

const BADGES: Record<string, BadgeKind> = {
  RUNNING: 'ok',
  DEPLOYING: 'progress',
  DELETING: 'progress',
  DEPLOY_FAILED: 'error',
  UNHEALTHY: 'error',
  NOT_STARTED: 'idle'
};

/**
 * The badge class of a deployment state.
 *
 * Example: `badgeFor('RUNNING') === 'ok'`.
 */
export function badgeFor(state: string): BadgeKind {
  return BADGES[state] ?? 'idle';
}

/**
 * Requests per second with a precision that suits its size.
 *
 * Example: `formatQps(1.234) === '1.23'`, `formatQps(null) === '—'`.
 */
export function formatQps(qps: number | null | undefined): string {
  if (qps === null || qps === undefined || !Number.isFinite(qps)) {
    return NONE;
  }
  const digits = qps >= 100 ? 0 : qps >= 10 ? 1 : 2;
  return qps.toFixed(digits);
}

/**
 * A latency in milliseconds.
 *
 * Example: `formatMs(35.2) === '35 ms'`, `formatMs(2.345) === '2.3 ms'`, `formatMs(null) === '—'`.
 */
export function formatMs(ms: number | null | undefined): string {
  if (ms === null || ms === undefined || !Number.isFinite(ms)) {
    return NONE;
  }
  return ms < 10 ? `${ms.toFixed(1)} ms` : `${Math.round(ms)} ms`;
}

/**
 * Version and alias of a deployment.
 *
 * Example: `versionLabel('3', 'champion') === 'v3 · champion'`, `versionLabel('3', null) === 'v3'`.
 */
export function versionLabel(version: string | null, alias: string | null): string {
  if (!version) {
    return NONE;
  }
  return alias ? `v${version} · ${alias}` : `v${version}`;
}

/**
 * One status document as a list row.
 *
 * Example: `toRow(doc).replicas === '2/2'`.
 */
export function toRow(doc: IStatusDocument): IDeploymentRow {
  const { min, max } = doc.replicas;
  return {
    name: doc.name,
    state: doc.state,
    badge: badgeFor(doc.state),
    version: versionLabel(doc.version, doc.alias),
    replicas: `${doc.replicas.current}/${doc.replicas.target}`,
    replicaBounds: min !== null && max !== null ? `${min}–${max}` : '',
    qps: formatQps(doc.traffic?.qps),
    p99: formatMs(doc.traffic?.p99_ms),
    message: doc.message,
    drift: driftBadge(doc.drift),
    rollout: rolloutBadge(doc.rollout)
  };
}

/** Colour class of a drift badge: `warn` for a warning, `error` for an alarm, `idle` without a verdict. */
export type DriftBadgeKind = 'ok' | 'warn' | 'error' | 'idle';

/** The drift state of a deployment as a badge. */
export interface IDriftBadge {
  state: DriftState;
  kind: DriftBadgeKind;
  /** "drift ok", "drift warning", "drift no reference", … */
  label: string;
  /** Tooltip: the drifted features, then the section's message. */
  title: string;
}

const DRIFT_BADGES: Record<DriftState, DriftBadgeKind> = {
  ok: 'ok',
  warning: 'warn',
  alarm: 'error',
  collecting: 'idle',
  no_reference: 'idle'
};

/**
 * The drift badge of a status document's drift section (null without one).
 *
 * Example: `driftBadge(doc.drift)?.label === 'drift warning'`.
 */
export function driftBadge(drift: IDriftSection | null): IDriftBadge | null {
  if (drift === null) {
    return null;
  }
  const features = drift.drifted_features.length > 0 ? `drifted: ${drift.drifted_features.join(', ')}` : '';
  return {
    state: drift.state,
    kind: DRIFT_BADGES[drift.state] ?? 'idle',
    label: `drift ${drift.state.replace('_', ' ')}`,
    title: [features, drift.message].filter(part => part !== '').join('; ') || `drift ${drift.state}`
  };
}

/**
 * A statistic or metric with three significant digits.
 *
 * Example: `formatStat(0.92456) === '0.925'`, `formatStat(null) === '—'`.
 */
export function formatStat(value: number | null | undefined): string {
  if (value === null || value === undefined || !Number.isFinite(value)) {
    return NONE;
  }
  return String(Number(value.toPrecision(3)));
}

/** One drifted feature with its effect size, e.g. `{ feature: 'petal_length', effect: 'KS D 0.31' }`. */
export interface IDriftedFeature {
  feature: string;
  effect: string;
}

/** The details' Drift block. */
export interface IDriftView {
  badge: IDriftBadge;
  message: string;
  /** Drifted features of the last window, largest effect first. */
  drifted: IDriftedFeature[];
  /** "0.64", or "—" before a window closed. */
  auc: string;
  /** "3 closed · 57 rows in the open one". */
  windows: string;
  /** "warning since <time> (was ok)", or null when the level never changed. */
  alarm: string | null;
}

const EFFECT_NAMES: Record<string, string> = { numeric: 'KS D', categorical: 'JS distance' };

/** Seconds since the epoch as a local date and time. */
export function formatTime(t: number): string {
  return new Date(t * 1000).toLocaleString();
}

/**
 * The drift section as the details show it (null without one).
 *
 * Example: `driftView(doc.drift)?.drifted[0]` is `{ feature: 'petal_length', effect: 'KS D 0.31' }`.
 */
export function driftView(drift: IDriftSection | null): IDriftView | null {
  const badge = driftBadge(drift);
  if (drift === null || badge === null) {
    return null;
  }
  const drifted = drift.features
    .filter(f => f.drifted)
    .sort((a, b) => b.effect_size - a.effect_size)
    .map(f => ({ feature: f.feature, effect: `${EFFECT_NAMES[f.kind] ?? 'effect'} ${formatStat(f.effect_size)}` }));
  const tested = new Set(drifted.map(f => f.feature));
  for (const feature of drift.drifted_features) {
    if (!tested.has(feature)) {
      drifted.push({ feature, effect: NONE });
    }
  }
  const alarm = drift.last_alarm;
  return {
    badge,
    message: drift.message,
    drifted,
    auc: formatStat(drift.auc),
    windows: `${drift.windows} closed · ${drift.window_rows} ${drift.window_rows === 1 ? 'row' : 'rows'} in the open one`,
    alarm: alarm === null ? null : `${alarm.level} since ${formatTime(alarm.t)} (was ${alarm.previous})`
  };
}

/** One non-zero data-quality counter of a field. */
export interface IQualityCounter {
  field: string;
  /** "missing", "type violations", "out of range" or "unseen categories". */
  counter: string;
  /** In the last closed window. */
  window: number;
  /** Since the Monitor started. */
  total: number;
}

const COUNTERS: [keyof IFieldQuality, string][] = [
  ['missing', 'missing'],
  ['type_violations', 'type violations'],
  ['out_of_range', 'out of range'],
  ['unseen_categories', 'unseen categories']
];

/**
 * The quality section's non-zero counters (last window or since start), by field then counter.
 *
 * Example: `qualityCounters(doc.quality)[0]` is `{ field: 'petal_length', counter: 'out of range', window: 14, total: 21 }`.
 */
export function qualityCounters(quality: IQualitySection): IQualityCounter[] {
  const fields = Array.from(new Set([...Object.keys(quality.fields), ...Object.keys(quality.totals)])).sort();
  const counters: IQualityCounter[] = [];
  for (const field of fields) {
    for (const [key, counter] of COUNTERS) {
      const window = quality.fields[field]?.[key] ?? 0;
      const total = quality.totals[field]?.[key] ?? 0;
      if (window > 0 || total > 0) {
        counters.push({ field, counter, window, total });
      }
    }
  }
  return counters;
}

/** One metric of the Performance block, e.g. `{ name: 'accuracy', value: '0.925' }`. */
export interface IMetricView {
  name: string;
  value: string;
}

/** The details' Performance block. */
export interface IPerformanceView {
  /** "classification · 120 labelled in 1 h". */
  summary: string;
  metrics: IMetricView[];
  /** Per version, newest first, e.g. `{ version: 'v2', metrics: 'accuracy 0.95 · f1 0.95' }`, when several have any. */
  versions: { version: string; metrics: string }[];
  /** Feedback ids that matched no prediction, since start. */
  unknownIds: number;
}

/** A duration in seconds, e.g. `formatDuration(3600) === '1 h'`, `formatDuration(90) === '1.5 min'`. */
export function formatDuration(seconds: number): string {
  if (seconds >= 3600) {
    return `${formatStat(seconds / 3600)} h`;
  }
  if (seconds >= 60) {
    return `${formatStat(seconds / 60)} min`;
  }
  return `${formatStat(seconds)} s`;
}

function metricViews(metrics: Record<string, number | null>): IMetricView[] {
  return Object.entries(metrics)
    .filter(([, value]) => value !== null)
    .map(([name, value]) => ({ name, value: formatStat(value) }));
}

/**
 * The performance section as the details show it: the serving version's metrics (those the cluster could compute).
 *
 * Example: `performanceView(doc.performance).metrics[0]` is `{ name: 'accuracy', value: '0.925' }`.
 */
export function performanceView(performance: IPerformanceSection): IPerformanceView {
  const versions = Object.entries(performance.by_version)
    .sort(([a], [b]) => b.localeCompare(a, undefined, { numeric: true }))
    .map(([version, metrics]) => ({
      version: `v${version}`,
      metrics: metricViews(metrics)
        .map(m => `${m.name} ${m.value}`)
        .join(' · ')
    }))
    .filter(v => v.metrics !== '');
  return {
    summary: `${performance.task ?? 'task not known yet'} · ${performance.labelled} labelled in ${formatDuration(performance.window_s)}`,
    metrics: metricViews(performance.metrics),
    versions: versions.length > 1 ? versions : [],
    unknownIds: performance.unknown_ids
  };
}

/** The rollout states after which nothing changes any more. */
export const FINAL_ROLLOUT_STATES: readonly RolloutState[] = ['promoted', 'rolled_back', 'aborted', 'finished'];

/** Whether a rollout has ended (promoted, rolled back, aborted or finished). */
export function isFinalRollout(rollout: IRolloutSection): boolean {
  return FINAL_ROLLOUT_STATES.includes(rollout.state);
}

/**
 * A traffic share as a percentage.
 *
 * Example: `formatShare(0.25) === '25%'`, `formatShare(0.125) === '12.5%'`.
 */
export function formatShare(share: number): string {
  return `${formatStat(share * 100)}%`;
}

const MODE_LABELS: Record<RolloutMode, string> = { canary: 'canary', shadow: 'shadow', ab: 'A/B' };

/** The rollout of a deployment as a small badge in its row. */
export interface IRolloutBadge {
  mode: RolloutMode;
  state: RolloutState;
  /** `progress` while it runs, `warn` while it waits (paused, awaiting approval). */
  kind: 'progress' | 'warn';
  /** "canary 25%", "shadow 100%", "A/B 50%". */
  label: string;
  /** Tooltip: versions, step, state and the rollout's message. */
  title: string;
}

/**
 * The badge of a running rollout; null without a rollout or once it has ended.
 *
 * Example: `rolloutBadge(doc.rollout)?.label === 'canary 25%'`.
 */
export function rolloutBadge(rollout: IRolloutSection | null): IRolloutBadge | null {
  if (rollout === null || isFinalRollout(rollout)) {
    return null;
  }
  const step = rollout.mode === 'canary' ? ` · step ${rollout.step + 1}/${rollout.steps.length}` : '';
  return {
    mode: rollout.mode,
    state: rollout.state,
    kind: rollout.state === 'running' ? 'progress' : 'warn',
    label: `${MODE_LABELS[rollout.mode]} ${formatShare(rollout.share)}`,
    title: `v${rollout.champion} → v${rollout.challenger}${step} · ${rollout.state.replace('_', ' ')}: ${rollout.message}`
  };
}

/** One gate of a rollout step as the details show it. */
export interface IGateView {
  gate: string;
  status: GateStatus;
  /** "✓", "✗" or "…". */
  mark: string;
  /** The gate's message. */
  title: string;
}

/** One planned step of a rollout. */
export interface IStepView {
  /** "1", "2", … */
  label: string;
  share: string;
  /** done: decided; current: running now; pending: not reached yet. */
  progress: 'done' | 'current' | 'pending';
  /** What the step decided ("advance", "running", …), or "" for a pending step. */
  decision: string;
  gates: IGateView[];
}

/** One version's traffic in the current step. */
export interface IVersionTrafficView {
  version: string;
  /** "champion", "challenger" or "". */
  role: string;
  requests: string;
  errorRate: string;
  p50: string;
  p99: string;
}

/** The details' Rollout block. */
export interface IRolloutView {
  /** "canary v2 → v3". */
  title: string;
  state: RolloutState;
  final: boolean;
  message: string;
  /** "v2 75% · v3 25%", or for a shadow "v2 serves all · v3 gets a copy of 100%". */
  split: string;
  share: number;
  steps: IStepView[];
  traffic: IVersionTrafficView[];
  /** Shadow/A-B report values (agreement, p-value, …). */
  report: IMetricView[];
  canPromote: boolean;
  canRollback: boolean;
}

const GATE_MARKS: Record<GateStatus, string> = { pass: '✓', fail: '✗', waiting: '…' };

/**
 * The rollout section as the details show it: steps with their gates, traffic per version, the report.
 *
 * Example: `rolloutView(doc.rollout).steps[1]` is `{ label: '2', share: '25%', progress: 'current', … }`.
 */
export function rolloutView(rollout: IRolloutSection): IRolloutView {
  const final = isFinalRollout(rollout);
  const planned = rollout.mode === 'canary' ? rollout.steps : [rollout.share];
  const steps: IStepView[] = planned.map((share, index) => {
    const happened = rollout.history.find(step => step.index === index);
    if (happened === undefined) {
      return { label: String(index + 1), share: formatShare(share), progress: 'pending', decision: '', gates: [] };
    }
    return {
      label: String(index + 1),
      share: formatShare(happened.share),
      progress: happened.ended_at === null && !final ? 'current' : 'done',
      decision: happened.decision,
      gates: happened.gates.map(g => ({ gate: g.gate, status: g.status, mark: GATE_MARKS[g.status], title: g.message }))
    };
  });
  const roles: Record<string, string> = { [rollout.champion]: 'champion', [rollout.challenger]: 'challenger' };
  const order = (version: string): number => (version === rollout.champion ? 0 : version === rollout.challenger ? 1 : 2);
  const traffic = Object.entries(rollout.traffic)
    .sort(([a], [b]) => order(a) - order(b) || a.localeCompare(b, undefined, { numeric: true }))
    .map(([version, t]) => ({
      version: `v${version}`,
      role: roles[version] ?? '',
      requests: String(t.requests),
      errorRate: t.error_rate === null ? NONE : formatShare(t.error_rate),
      p50: formatMs(t.p50_ms),
      p99: formatMs(t.p99_ms)
    }));
  const split =
    rollout.mode === 'shadow'
      ? `v${rollout.champion} serves all · v${rollout.challenger} gets a copy of ${formatShare(rollout.share)}`
      : `v${rollout.champion} ${formatShare(1 - rollout.share)} · v${rollout.challenger} ${formatShare(rollout.share)}`;
  return {
    title: `${MODE_LABELS[rollout.mode]} v${rollout.champion} → v${rollout.challenger}`,
    state: rollout.state,
    final,
    message: rollout.message,
    split,
    share: rollout.share,
    steps,
    traffic,
    report: Object.entries(rollout.report).map(([name, value]) => ({ name, value: formatStat(value) })),
    canPromote: !final,
    canRollback: true
  };
}

/** Rows sorted by deployment name. */
export function toRows(docs: IStatusDocument[]): IDeploymentRow[] {
  return docs.map(toRow).sort((a, b) => a.name.localeCompare(b.name));
}

/** The cluster header of the panel. */
export interface IClusterView {
  connected: boolean;
  /** "local · 1 node · 2 CPUs" or "not connected". */
  summary: string;
  message: string;
  dashboardUrl: string | null;
  canStart: boolean;
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * The cluster document as the panel header shows it.
 *
 * Example: `clusterView(doc).summary === 'local · 1 node · 2 CPUs'`.
 */
export function clusterView(cluster: IClusterDocument): IClusterView {
  if (!cluster.connected) {
    return {
      connected: false,
      summary: 'not connected',
      message: cluster.message,
      dashboardUrl: null,
      canStart: true
    };
  }
  const parts = [cluster.local ? 'local' : cluster.address ?? 'remote', plural(cluster.nodes, 'node')];
  parts.push(plural(cluster.cpus, 'CPU'));
  if (cluster.gpus > 0) {
    parts.push(plural(cluster.gpus, 'GPU'));
  }
  return {
    connected: true,
    summary: parts.join(' · '),
    message: cluster.message,
    dashboardUrl: cluster.dashboard_url,
    canStart: false
  };
}

/** Result of checking the scale inputs. */
export type ScaleInput = { ok: true; min: number; max: number } | { ok: false; error: string };

/** Bounds of DeployOptions.min_replicas / max_replicas in `ray_deploy.config`. */
export const REPLICA_LIMIT = 1000;

function parseCount(label: string, text: string, lowest: number): number | string {
  const trimmed = text.trim();
  if (trimmed === '') {
    return `${label} is required: enter a whole number from ${lowest} to ${REPLICA_LIMIT}`;
  }
  if (!/^[+-]?\d+$/.test(trimmed)) {
    return `${label} must be a whole number, got '${trimmed}'`;
  }
  const value = Number(trimmed);
  if (value < lowest || value > REPLICA_LIMIT) {
    return `${label} must be between ${lowest} and ${REPLICA_LIMIT}, got ${value}`;
  }
  return value;
}

/**
 * Checks the scale form: whole numbers, 0 <= min <= max, 1 <= max <= 1000.
 *
 * Example: `validateScale('3', '2')` is `{ ok: false, error: 'min replicas must be <= max replicas (min 3, max 2)' }`.
 */
export function validateScale(minText: string, maxText: string): ScaleInput {
  const min = parseCount('min replicas', minText, 0);
  if (typeof min === 'string') {
    return { ok: false, error: min };
  }
  const max = parseCount('max replicas', maxText, 1);
  if (typeof max === 'string') {
    return { ok: false, error: max };
  }
  if (min > max) {
    return { ok: false, error: `min replicas must be <= max replicas (min ${min}, max ${max})` };
  }
  return { ok: true, min, max };
}

/**
 * The Python line that gets a deployment in a notebook.
 *
 * Example: `snippetFor('iris') === 'ray_deploy.get("iris")'`.
 */
export function snippetFor(name: string): string {
  return `ray_deploy.get(${JSON.stringify(name)})`;
}

/** Whether an action has finished. */
export function isFinished(action: IActionDocument): boolean {
  return action.status === 'SUCCEEDED' || action.status === 'FAILED';
}

/** How to follow an action. */
export interface IFollowOptions {
  /** Milliseconds between polls. */
  intervalMs?: number;
  /** Give up after this many milliseconds. */
  timeoutMs?: number;
  /** Waits `ms` milliseconds (injectable for tests). */
  sleep?: (ms: number) => Promise<void>;
  /** Current time in milliseconds (injectable for tests). */
  now?: () => number;
}

const realSleep = (ms: number): Promise<void> => new Promise(resolve => setTimeout(resolve, ms));

/**
 * Polls `GET actions/<id>` until the action SUCCEEDED or FAILED and returns its last document.
 *
 * Example: `const done = await followAction(api, await api.scale('iris', 1, 2));`
 *
 * @throws Error when it has not finished within `timeoutMs`.
 */
export async function followAction(
  api: Pick<IRayDeployApi, 'getAction'>,
  action: IActionDocument,
  options: IFollowOptions = {}
): Promise<IActionDocument> {
  const { intervalMs = 1000, timeoutMs = 600_000, sleep = realSleep, now = Date.now } = options;
  const deadline = now() + timeoutMs;
  let current = action;
  while (!isFinished(current)) {
    if (now() >= deadline) {
      throw new Error(
        `${current.action} of '${current.name}' is still ${current.status} after ${Math.round(timeoutMs / 1000)} s; ` +
          'check the Ray dashboard'
      );
    }
    await sleep(intervalMs);
    current = await api.getAction(current.action_id);
  }
  return current;
}

/** A one-line summary of a finished action for a notification. */
export function actionSummary(action: IActionDocument): string {
  const verb = { scale: 'Scaled', delete: 'Deleted', promote: 'Promoted', rollback: 'Rolled back' }[action.action];
  if (action.status === 'SUCCEEDED') {
    return action.message ? `${verb} '${action.name}': ${action.message}` : `${verb} '${action.name}'`;
  }
  return `${action.action} of '${action.name}' failed: ${action.message}`;
}

/** Polling frequency of the panel: 3 s, backing off up to 60 s while requests fail. */
export const POLL_FREQUENCY = { interval: 3000, backoff: true, max: 60_000 } as const;

/**
 * What the panel shows: the cluster, the deployment rows and the selected deployment's details.
 * `refresh()` rejects when a request fails (so a `Poll` backs off); `error` holds the message and
 * `onError` fires only when the message changes, so a persisting failure is reported once.
 */
export class PanelModel {
  constructor(readonly api: IRayDeployApi) {}

  cluster: IClusterDocument | null = null;
  rows: IDeploymentRow[] = [];
  documents: IStatusDocument[] = [];
  selected: string | null = null;
  details: IDeploymentDetails | null = null;
  error: string | null = null;
  /** Fired when an error message appears (not again while the same error persists). */
  onError: ((message: string) => void) | null = null;

  private listeners = new Set<() => void>();

  /** Calls `listener` after every change; returns a function that unsubscribes it. */
  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** The cluster header, or null before the first answer. */
  get clusterView(): IClusterView | null {
    return this.cluster ? clusterView(this.cluster) : null;
  }

  /** The selected deployment's status document from the last list, or null. */
  get selectedDocument(): IStatusDocument | null {
    return this.documents.find(doc => doc.name === this.selected) ?? null;
  }

  /** Fetches the cluster, the deployments and the selected deployment's details. */
  async refresh(): Promise<void> {
    try {
      this.cluster = await this.api.getCluster();
      if (this.cluster.connected) {
        const { deployments } = await this.api.listDeployments();
        this.documents = deployments;
        this.rows = toRows(deployments);
      } else {
        this.documents = [];
        this.rows = [];
      }
      if (this.selected !== null && !this.documents.some(doc => doc.name === this.selected)) {
        this.selected = null;
        this.details = null;
      }
      if (this.selected !== null) {
        this.details = await this.api.getDeployment(this.selected);
      }
      this.error = null;
    } catch (error) {
      this.setError(error);
      throw error;
    } finally {
      this.emit();
    }
  }

  /** Selects a deployment (or none) and loads its details. */
  async select(name: string | null): Promise<void> {
    this.selected = name;
    this.details = null;
    this.emit();
    if (name === null) {
      return;
    }
    try {
      const details = await this.api.getDeployment(name);
      if (this.selected === name) {
        this.details = details;
      }
    } catch (error) {
      this.setError(error);
    } finally {
      this.emit();
    }
  }

  /**
   * Starts a local cluster (`POST cluster/start`) and returns its document. A failure is thrown to the
   * caller (which reports it), not stored as the panel's refresh error.
   */
  async startCluster(): Promise<IClusterDocument> {
    const cluster = await this.api.startCluster();
    this.cluster = cluster;
    this.emit();
    return cluster;
  }

  private setError(error: unknown): void {
    const message = error instanceof Error ? error.message : String(error);
    const isNew = message !== this.error;
    this.error = message;
    if (isNew && this.onError) {
      this.onError(message);
    }
  }

  private emit(): void {
    for (const listener of this.listeners) {
      listener();
    }
  }
}
