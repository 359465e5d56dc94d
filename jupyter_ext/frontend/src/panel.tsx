/**
 * The left side panel: cluster status, the deployment list and the selected deployment's details and
 * actions. It renders `PanelModel` (model.ts) and holds no logic of its own beyond wiring buttons.
 *
 * Example:
 *   const panel = new RayDeployPanel({ model: new PanelModel(new RayDeployApi()), commands: app.commands });
 *   app.shell.add(panel, 'left');
 */
import { Dialog, Notification, ReactWidget, showDialog } from '@jupyterlab/apputils';
import { refreshIcon } from '@jupyterlab/ui-components';
import type { CommandRegistry } from '@lumino/commands';
import type { Message } from '@lumino/messaging';
import type { Poll } from '@lumino/polling';
import * as React from 'react';

import type {
  IActionDocument,
  IAuditTrail,
  IDeploymentDetails,
  IDriftSection,
  IAutoRetrainSection,
  IPerformanceSection,
  IQualitySection,
  IRetrainSection,
  IRolloutSection,
  IStatusDocument
} from './api';
import { rayDeployIcon } from './icon';
import {
  actionSummary,
  driftView,
  followAction,
  isFinalRollout,
  type IClusterView,
  type IDeploymentRow,
  type IDriftBadge,
  type IRolloutBadge,
  NONE,
  type PanelModel,
  performanceView,
  qualityCounters,
  rolloutView,
  validateScale
} from './model';
import { createRefreshPoll } from './poll';
import { autoRetrainView, lastEventTime, retrainView } from './retrain';

/** Command that inserts the `ray_deploy.get(...)` snippet (registered in index.ts). */
export const INSERT_SNIPPET_COMMAND = 'ray-deploy:insert-snippet';

/** Options of the panel. */
export interface IPanelOptions {
  model: PanelModel;
  commands: CommandRegistry;
}

/** The side panel widget. */
export class RayDeployPanel extends ReactWidget {
  constructor(options: IPanelOptions) {
    super();
    this.model = options.model;
    this.commands = options.commands;
    this.id = 'ray-deploy-panel';
    this.addClass('jp-RayDeploy-panel');
    this.node.dataset.testid = 'ray-deploy-panel';
    this.title.icon = rayDeployIcon;
    this.title.caption = 'Ray Deploy';
    this.model.onError = message => Notification.error(message, { autoClose: 8000 });
    this.poll = createRefreshPoll(
      () => this.model.refresh(),
      () => this.isVisible
    );
  }

  readonly model: PanelModel;
  readonly commands: CommandRegistry;
  readonly poll: Poll;

  /** Refreshes now (and restarts the poll's schedule). */
  refresh(): Promise<void> {
    return this.poll.refresh();
  }

  protected onAfterShow(msg: Message): void {
    super.onAfterShow(msg);
    void this.poll.refresh();
  }

  dispose(): void {
    if (this.isDisposed) {
      return;
    }
    this.poll.dispose();
    super.dispose();
  }

  protected render(): JSX.Element {
    return <PanelView panel={this} />;
  }
}

/** Re-renders when the model changes. */
function useModel(model: PanelModel): void {
  const [, setVersion] = React.useState(0);
  React.useEffect(() => model.subscribe(() => setVersion(v => v + 1)), [model]);
}

function PanelView({ panel }: { panel: RayDeployPanel }): JSX.Element {
  const model = panel.model;
  useModel(model);
  const view = model.clusterView;
  return (
    <div className="jp-RayDeploy">
      <div className="jp-RayDeploy-header">
        <h2 className="jp-RayDeploy-title">Ray Deploy</h2>
        <button
          className="jp-RayDeploy-iconButton"
          data-testid="ray-deploy-refresh"
          title="Refresh"
          onClick={() => void panel.refresh()}
        >
          <refreshIcon.react tag="span" />
        </button>
      </div>
      <ClusterSection panel={panel} view={view} />
      {view?.connected ? (
        <>
          <DeploymentList panel={panel} />
          {model.selected !== null && model.selectedDocument !== null ? (
            <DeploymentDetails panel={panel} doc={model.selectedDocument} details={model.details} />
          ) : null}
        </>
      ) : null}
    </div>
  );
}

function ClusterSection({ panel, view }: { panel: RayDeployPanel; view: IClusterView | null }): JSX.Element {
  const [starting, setStarting] = React.useState(false);
  if (view === null) {
    return (
      <div className="jp-RayDeploy-section jp-RayDeploy-cluster" data-testid="ray-deploy-cluster">
        <span className="jp-RayDeploy-muted">{panel.model.error ?? 'Loading…'}</span>
      </div>
    );
  }
  const start = async (): Promise<void> => {
    setStarting(true);
    const started = await withProgress('Starting a local Ray cluster', panel.model.startCluster(), () => {
      return 'Local Ray cluster started';
    });
    setStarting(false);
    if (started !== null) {
      await panel.refresh();
    }
  };
  return (
    <div
      className="jp-RayDeploy-section jp-RayDeploy-cluster"
      data-testid="ray-deploy-cluster"
      data-connected={view.connected ? 'true' : 'false'}
    >
      <div className="jp-RayDeploy-clusterLine">
        <span className={`jp-RayDeploy-dot ${view.connected ? 'jp-mod-connected' : ''}`} />
        <span data-testid="ray-deploy-cluster-summary">{view.summary}</span>
        {view.dashboardUrl ? (
          <a
            className="jp-RayDeploy-link"
            data-testid="ray-deploy-dashboard-link"
            href={view.dashboardUrl}
            target="_blank"
            rel="noopener noreferrer"
          >
            Ray dashboard
          </a>
        ) : null}
      </div>
      {view.message ? (
        <div className="jp-RayDeploy-muted" data-testid="ray-deploy-cluster-message">
          {view.message}
        </div>
      ) : null}
      {view.canStart ? (
        <button
          className="jp-RayDeploy-button jp-mod-accept"
          data-testid="ray-deploy-start-cluster"
          disabled={starting}
          onClick={() => void start()}
        >
          {starting ? 'Starting…' : 'Start local cluster'}
        </button>
      ) : null}
    </div>
  );
}

function DeploymentList({ panel }: { panel: RayDeployPanel }): JSX.Element {
  const { rows, selected } = panel.model;
  return (
    <div className="jp-RayDeploy-section" data-testid="ray-deploy-deployments">
      <h3 className="jp-RayDeploy-sectionTitle">Deployments ({rows.length})</h3>
      {rows.length === 0 ? (
        <div className="jp-RayDeploy-muted" data-testid="ray-deploy-empty">
          No deployments yet. In a notebook: <code>%deploy model --name iris</code>
        </div>
      ) : (
        <ul className="jp-RayDeploy-list">
          {rows.map(row => (
            <DeploymentRowView
              key={row.name}
              row={row}
              selected={row.name === selected}
              onSelect={() => void panel.model.select(row.name === selected ? null : row.name)}
            />
          ))}
        </ul>
      )}
    </div>
  );
}

function DeploymentRowView(props: { row: IDeploymentRow; selected: boolean; onSelect: () => void }): JSX.Element {
  const { row, selected, onSelect } = props;
  return (
    <li
      className={`jp-RayDeploy-row ${selected ? 'jp-mod-selected' : ''}`}
      data-testid={`ray-deploy-row-${row.name}`}
      data-name={row.name}
      data-state={row.state}
      aria-selected={selected}
      role="option"
      tabIndex={0}
      title={row.message || row.state}
      onClick={onSelect}
      onKeyDown={event => {
        if (event.key === 'Enter' || event.key === ' ') {
          event.preventDefault();
          onSelect();
        }
      }}
    >
      <div className="jp-RayDeploy-rowHead">
        <span className="jp-RayDeploy-name">{row.name}</span>
        <span className="jp-RayDeploy-badges">
          {row.rollout !== null ? (
            <>
              <RolloutBadge badge={row.rollout} />{' '}
            </>
          ) : null}
          {row.drift !== null ? (
            <>
              <DriftBadge badge={row.drift} />{' '}
            </>
          ) : null}
          <span className={`jp-RayDeploy-badge jp-RayDeploy-badge-${row.badge}`} data-testid="ray-deploy-state">
            {row.state}
          </span>
        </span>
      </div>
      <div className="jp-RayDeploy-rowStats">
        <span data-testid="ray-deploy-version">{row.version}</span>
        <span title={row.replicaBounds ? `autoscaling ${row.replicaBounds}` : 'replicas running/target'}>
          replicas <span data-testid="ray-deploy-replicas">{row.replicas}</span>
        </span>
        <span>
          QPS <span data-testid="ray-deploy-qps">{row.qps}</span>
        </span>
        <span>
          p99 <span data-testid="ray-deploy-p99">{row.p99}</span>
        </span>
      </div>
    </li>
  );
}

/** The drift state badge (colour from the theme: success, warn, error or neutral). */
function DriftBadge({ badge }: { badge: IDriftBadge }): JSX.Element {
  return (
    <span
      className={`jp-RayDeploy-badge jp-RayDeploy-badge-${badge.kind}`}
      data-testid="ray-deploy-drift"
      data-state={badge.state}
      title={badge.title}
    >
      {badge.label}
    </span>
  );
}

/** The badge of a running rollout ("canary 25%"). */
function RolloutBadge({ badge }: { badge: IRolloutBadge }): JSX.Element {
  return (
    <span
      className={`jp-RayDeploy-badge jp-RayDeploy-badge-${badge.kind}`}
      data-testid="ray-deploy-rollout"
      data-mode={badge.mode}
      data-state={badge.state}
      title={badge.title}
    >
      {badge.label}
    </span>
  );
}

/**
 * The details' Rollout block: the split, progress through the steps with each step's gates, traffic per
 * version, the report, and promote / roll back buttons (each confirmed in a dialog, then followed as an action).
 */
function RolloutBlock(props: {
  rollout: IRolloutSection;
  busy: boolean;
  onPromote: (rollout: IRolloutSection) => void;
  onRollback: (rollout: IRolloutSection) => void;
}): JSX.Element {
  const { rollout, busy, onPromote, onRollback } = props;
  const view = rolloutView(rollout);
  return (
    <div className="jp-RayDeploy-rollout" data-testid="ray-deploy-rollout-block" data-state={view.state}>
      <h4 className="jp-RayDeploy-subTitle">Rollout</h4>
      <div className="jp-RayDeploy-clusterLine">
        <span data-testid="ray-deploy-rollout-title">{view.title}</span>
        <span
          className={`jp-RayDeploy-badge jp-RayDeploy-badge-${view.final ? 'idle' : view.state === 'running' ? 'progress' : 'warn'}`}
          data-testid="ray-deploy-rollout-state"
        >
          {view.state.replace('_', ' ')}
        </span>
      </div>
      <div className="jp-RayDeploy-muted" data-testid="ray-deploy-rollout-message">
        {view.message}
      </div>
      <div className="jp-RayDeploy-split" title={view.split} data-testid="ray-deploy-rollout-split">
        <div className="jp-RayDeploy-splitChallenger" style={{ width: `${Math.round(view.share * 100)}%` }} />
      </div>
      <div className="jp-RayDeploy-muted">{view.split}</div>
      <ol className="jp-RayDeploy-steps" data-testid="ray-deploy-rollout-steps">
        {view.steps.map(step => (
          <li key={step.label} className={`jp-RayDeploy-step jp-mod-${step.progress}`} data-progress={step.progress}>
            <span className="jp-RayDeploy-stepShare">{step.share}</span>
            {step.decision ? <span className="jp-RayDeploy-muted"> {step.decision}</span> : null}
            {step.gates.map(gate => (
              <span
                key={gate.gate}
                className={`jp-RayDeploy-gate jp-mod-${gate.status}`}
                data-testid="ray-deploy-gate"
                data-status={gate.status}
                title={gate.title}
              >
                {gate.mark} {gate.gate.replace('_', ' ')}
              </span>
            ))}
          </li>
        ))}
      </ol>
      {view.traffic.length > 0 ? (
        <table className="jp-RayDeploy-table" data-testid="ray-deploy-rollout-traffic">
          <thead>
            <tr>
              <th>version</th>
              <th>requests</th>
              <th>errors</th>
              <th>p50</th>
              <th>p99</th>
            </tr>
          </thead>
          <tbody>
            {view.traffic.map(t => (
              <tr key={t.version}>
                <td title={t.role}>
                  {t.version}
                  {t.role ? <span className="jp-RayDeploy-muted"> {t.role}</span> : null}
                </td>
                <td>{t.requests}</td>
                <td>{t.errorRate}</td>
                <td>{t.p50}</td>
                <td>{t.p99}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : null}
      {view.report.length > 0 ? (
        <dl className="jp-RayDeploy-facts" data-testid="ray-deploy-rollout-report">
          {view.report.map(m => (
            <React.Fragment key={m.name}>
              <dt>{m.name.replace(/_/g, ' ')}</dt>
              <dd>{m.value}</dd>
            </React.Fragment>
          ))}
        </dl>
      ) : null}
      <div className="jp-RayDeploy-actions">
        {view.canPromote ? (
          <button
            className="jp-RayDeploy-button jp-mod-accept"
            data-testid="ray-deploy-promote"
            disabled={busy}
            title={`Make v${rollout.challenger} the champion now`}
            onClick={() => onPromote(rollout)}
          >
            Promote v{rollout.challenger}
          </button>
        ) : null}
        {view.canRollback ? (
          <button
            className="jp-RayDeploy-button jp-mod-warn"
            data-testid="ray-deploy-rollback"
            disabled={busy}
            title={`Serve v${rollout.champion} alone again`}
            onClick={() => onRollback(rollout)}
          >
            Roll back
          </button>
        ) : null}
      </div>
    </div>
  );
}

/**
 * The details' Retrain block: the running retrain (state, trials done of planned, best metric, elapsed and the
 * time left of its budget) or the last outcome (message, new version, the evaluation gate), then the
 * auto-retrain policy line with its last decision. Either section may be null; null when both are.
 */
function RetrainBlock(props: {
  retrain: IRetrainSection | null;
  autoRetrain: IAutoRetrainSection | null;
}): JSX.Element | null {
  const { retrain, autoRetrain } = props;
  if (retrain === null && autoRetrain === null) {
    return null;
  }
  const view = retrain === null ? null : retrainView(retrain, Date.now() / 1000);
  const auto = autoRetrain === null ? null : autoRetrainView(autoRetrain);
  return (
    <div className="jp-RayDeploy-retrain" data-testid="ray-deploy-retrain-block" data-state={view?.state ?? 'none'}>
      <h4 className="jp-RayDeploy-subTitle">Retrain</h4>
      {view !== null ? (
        <>
          <div className="jp-RayDeploy-clusterLine">
            <span data-testid="ray-deploy-retrain-title">{view.title}</span>
            <span
              className={`jp-RayDeploy-badge jp-RayDeploy-badge-${view.badge}`}
              data-testid="ray-deploy-retrain-state"
            >
              {view.state}
            </span>
          </div>
          <div className="jp-RayDeploy-muted" data-testid="ray-deploy-retrain-progress">
            {[view.trials, view.best, view.final ? `took ${view.elapsed}` : `${view.elapsed} elapsed`, view.remaining]
              .filter(part => part !== '')
              .join(' · ')}
          </div>
          <div className="jp-RayDeploy-muted" data-testid="ray-deploy-retrain-message">
            {view.message}
          </div>
          {view.version ? <div data-testid="ray-deploy-retrain-version">{view.version}</div> : null}
          {view.gate !== null ? (
            <>
              <div
                className={`jp-RayDeploy-gate jp-mod-${view.gate.passed ? 'pass' : 'fail'}`}
                data-testid="ray-deploy-retrain-gate"
                data-passed={String(view.gate.passed)}
                title={view.gate.reason}
              >
                {view.gate.passed ? '✓' : '✗'} {view.gate.label}
              </div>
              <table className="jp-RayDeploy-table" data-testid="ray-deploy-retrain-gate-rows">
                <thead>
                  <tr>
                    <th>data</th>
                    <th>rows</th>
                    <th>champion</th>
                    <th>challenger</th>
                    <th>delta</th>
                  </tr>
                </thead>
                <tbody>
                  {view.gate.rows.map(row => (
                    <tr key={row.dataset}>
                      <td>{row.dataset}</td>
                      <td>{row.rows}</td>
                      <td>{row.champion}</td>
                      <td>{row.challenger}</td>
                      <td>{row.delta}</td>
                    </tr>
                  ))}
                </tbody>
              </table>
            </>
          ) : null}
        </>
      ) : null}
      {auto !== null ? (
        <div className="jp-RayDeploy-muted" data-testid="ray-deploy-auto-retrain">
          auto-retrain {auto.policy}
          {auto.lastEvent !== null ? (
            <div title={lastEventTime(auto)} data-testid="ray-deploy-auto-retrain-event">
              last: {auto.lastEvent}
            </div>
          ) : null}
        </div>
      ) : null}
    </div>
  );
}

/** The details' Drift block: state, drifted features with their effect sizes, AUC, windows, the last alarm. */
function DriftBlock({ drift }: { drift: IDriftSection }): JSX.Element | null {
  const view = driftView(drift);
  if (view === null) {
    return null;
  }
  return (
    <div data-testid="ray-deploy-drift-block">
      <h4 className="jp-RayDeploy-subTitle">Drift</h4>
      <div className="jp-RayDeploy-clusterLine">
        <DriftBadge badge={view.badge} />
        <span className="jp-RayDeploy-muted">{view.message}</span>
      </div>
      <dl className="jp-RayDeploy-facts">
        {view.drifted.map(f => (
          <React.Fragment key={f.feature}>
            <dt data-testid="ray-deploy-drifted-feature">{f.feature}</dt>
            <dd>{f.effect}</dd>
          </React.Fragment>
        ))}
        <dt>AUC</dt>
        <dd title="domain classifier, reference vs last window (0.5 = indistinguishable)">{view.auc}</dd>
        <dt>Windows</dt>
        <dd>{view.windows}</dd>
        {view.alarm !== null ? (
          <>
            <dt>Alarm</dt>
            <dd data-testid="ray-deploy-drift-alarm">{view.alarm}</dd>
          </>
        ) : null}
      </dl>
    </div>
  );
}

/** The details' Quality block: rejected requests and the non-zero counters (last window, and since start). */
function QualityBlock({ quality }: { quality: IQualitySection }): JSX.Element {
  const counters = qualityCounters(quality);
  const rejected = Object.entries(quality.rejected_by_field)
    .map(([field, count]) => `${field} ${count}`)
    .join(', ');
  return (
    <div data-testid="ray-deploy-quality-block">
      <h4 className="jp-RayDeploy-subTitle">Quality</h4>
      {counters.length === 0 && quality.rejected_requests === 0 ? (
        <div className="jp-RayDeploy-muted">No data-quality issues in {quality.rows} rows.</div>
      ) : (
        <dl className="jp-RayDeploy-facts">
          {quality.rejected_requests > 0 ? (
            <>
              <dt>rejected</dt>
              <dd>
                {quality.rejected_requests} requests{rejected ? ` (${rejected})` : ''}
              </dd>
            </>
          ) : null}
          {counters.map(c => (
            <React.Fragment key={`${c.field}/${c.counter}`}>
              <dt data-testid="ray-deploy-quality-field">{c.field}</dt>
              <dd>
                {c.counter} {c.window} <span className="jp-RayDeploy-muted">({c.total} since start)</span>
              </dd>
            </React.Fragment>
          ))}
        </dl>
      )}
    </div>
  );
}

/** The details' Performance block: the serving version's metrics from labels, and per version when several. */
function PerformanceBlock({ performance }: { performance: IPerformanceSection }): JSX.Element {
  const view = performanceView(performance);
  return (
    <div data-testid="ray-deploy-performance-block">
      <h4 className="jp-RayDeploy-subTitle">Performance</h4>
      <div className="jp-RayDeploy-muted">{view.summary}</div>
      <dl className="jp-RayDeploy-facts">
        {view.metrics.map(m => (
          <React.Fragment key={m.name}>
            <dt>{m.name}</dt>
            <dd data-testid={`ray-deploy-metric-${m.name}`}>{m.value}</dd>
          </React.Fragment>
        ))}
        {view.versions.map(v => (
          <React.Fragment key={v.version}>
            <dt>{v.version}</dt>
            <dd>{v.metrics}</dd>
          </React.Fragment>
        ))}
        {view.unknownIds > 0 ? (
          <>
            <dt>unmatched</dt>
            <dd title="feedback request ids that matched no captured prediction, since the Monitor started">
              {view.unknownIds} feedback ids
            </dd>
          </>
        ) : null}
      </dl>
    </div>
  );
}

/** One line of a before/after dict, e.g. `version 3, max_replicas 1`. */
export function describeChange(change: Record<string, unknown>): string {
  return Object.entries(change)
    .map(([key, value]) => `${key} ${typeof value === 'object' && value !== null ? JSON.stringify(value) : String(value)}`)
    .join(', ');
}

/**
 * The details' Audit block: who changed the deployment, when and how (newest first), and whether the audit
 * log's hash chain is intact. Loaded when the deployment is selected and when its serving version changes.
 */
function AuditBlock(props: { panel: RayDeployPanel; name: string; version: string | null }): JSX.Element {
  const { panel, name, version } = props;
  const [trail, setTrail] = React.useState<IAuditTrail | null>(null);
  const [error, setError] = React.useState<string | null>(null);
  const load = React.useCallback(() => {
    panel.model.api.getAudit(name).then(
      doc => {
        setTrail(doc);
        setError(null);
      },
      (reason: unknown) => setError(reason instanceof Error ? reason.message : String(reason))
    );
  }, [panel, name]);
  React.useEffect(() => {
    setTrail(null);
    load();
  }, [name, version, load]);
  const entries = trail === null ? [] : [...trail.entries].reverse().slice(0, 20);
  return (
    <div className="jp-RayDeploy-audit" data-testid="ray-deploy-audit">
      <h4 className="jp-RayDeploy-subTitle">
        Audit{' '}
        <button className="jp-RayDeploy-button" data-testid="ray-deploy-audit-refresh" onClick={load}>
          Refresh
        </button>
      </h4>
      {error !== null ? <div className="jp-RayDeploy-error">{error}</div> : null}
      {trail === null && error === null ? <div className="jp-RayDeploy-muted">Loading…</div> : null}
      {trail !== null ? (
        <>
          <div
            className={trail.verification.ok ? 'jp-RayDeploy-muted' : 'jp-RayDeploy-error'}
            data-testid="ray-deploy-audit-chain"
          >
            {trail.verification.ok
              ? `hash chain intact (${trail.verification.count} entries)`
              : `audit log tampered: entry ${trail.verification.broken_at}: ${trail.verification.reason}`}
          </div>
          {entries.length === 0 ? <div className="jp-RayDeploy-muted">no audit entries</div> : null}
          <ul className="jp-RayDeploy-auditEntries">
            {entries.map(entry => (
              <li key={entry.hash} title={JSON.stringify(entry.evidence)}>
                <span className="jp-RayDeploy-muted">{new Date(entry.time * 1000).toLocaleString()}</span>{' '}
                <b>{entry.action}</b> by {entry.who}
                {entry.outcome !== 'ok' ? <span className="jp-RayDeploy-warn"> · {entry.outcome}</span> : null}
                {Object.keys(entry.after).length > 0 ? (
                  <span className="jp-RayDeploy-muted">
                    {' '}
                    · {describeChange(entry.before)} → {describeChange(entry.after)}
                  </span>
                ) : null}
              </li>
            ))}
          </ul>
        </>
      ) : null}
    </div>
  );
}

function DeploymentDetails(props: {
  panel: RayDeployPanel;
  doc: IStatusDocument;
  details: IDeploymentDetails | null;
}): JSX.Element {
  const { panel, doc, details } = props;
  const [minText, setMinText] = React.useState(String(doc.replicas.min ?? doc.replicas.target));
  const [maxText, setMaxText] = React.useState(String(doc.replicas.max ?? doc.replicas.target));
  const [busy, setBusy] = React.useState<string | null>(null);
  React.useEffect(() => {
    // a new selection starts from its own bounds
    setMinText(String(doc.replicas.min ?? doc.replicas.target));
    setMaxText(String(doc.replicas.max ?? doc.replicas.target));
    setBusy(null);
  }, [doc.name]);
  const scaleInput = validateScale(minText, maxText);

  const run = async (label: string, start: () => Promise<IActionDocument>): Promise<void> => {
    setBusy(label);
    try {
      await runAction(panel, label, start);
    } finally {
      setBusy(null);
    }
  };
  const onScale = (): void => {
    if (scaleInput.ok) {
      void run(`Scaling '${doc.name}' to ${scaleInput.min}–${scaleInput.max}`, () =>
        panel.model.api.scale(doc.name, scaleInput.min, scaleInput.max)
      );
    }
  };
  const onDelete = async (): Promise<void> => {
    const answer = await showDialog({
      title: `Delete '${doc.name}'?`,
      body: 'Its Ray Serve application stops serving; its versions stay in the MLflow registry.',
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Delete' })]
    });
    if (answer.button.accept) {
      await run(`Deleting '${doc.name}'`, () => panel.model.api.deleteDeployment(doc.name));
    }
  };

  const onPromote = async (rollout: IRolloutSection): Promise<void> => {
    const answer = await showDialog({
      title: `Promote v${rollout.challenger} of '${doc.name}'?`,
      body: `v${rollout.challenger} becomes the champion and takes all traffic at once; the ${rollout.mode} ends.`,
      buttons: [Dialog.cancelButton(), Dialog.okButton({ label: 'Promote' })]
    });
    if (answer.button.accept) {
      await run(`Promoting v${rollout.challenger} of '${doc.name}'`, () => panel.model.api.promote(doc.name));
    }
  };
  const onRollback = async (rollout: IRolloutSection): Promise<void> => {
    const answer = await showDialog({
      title: `Roll back '${doc.name}'?`,
      body: isFinalRollout(rollout)
        ? 'The previous champion serves all traffic again.'
        : `v${rollout.champion} serves all traffic again; the ${rollout.mode} of v${rollout.challenger} ends.`,
      buttons: [Dialog.cancelButton(), Dialog.warnButton({ label: 'Roll back' })]
    });
    if (answer.button.accept) {
      await run(`Rolling back '${doc.name}'`, () => panel.model.api.rollback(doc.name));
    }
  };

  return (
    <div className="jp-RayDeploy-section jp-RayDeploy-details" data-testid="ray-deploy-details" data-name={doc.name}>
      <h3 className="jp-RayDeploy-sectionTitle">{doc.name}</h3>
      {doc.message ? (
        <div className="jp-RayDeploy-muted" data-testid="ray-deploy-message">
          {doc.message}
        </div>
      ) : null}
      <dl className="jp-RayDeploy-facts">
        <dt>Model</dt>
        <dd>{doc.model_kind ?? NONE}</dd>
        <dt>Endpoint</dt>
        <dd>
          <a
            className="jp-RayDeploy-link"
            data-testid="ray-deploy-link-endpoint"
            href={doc.links.endpoint}
            target="_blank"
            rel="noopener noreferrer"
          >
            {doc.links.endpoint}
          </a>
        </dd>
        {doc.links.model_uri ? (
          <>
            <dt>Model URI</dt>
            <dd data-testid="ray-deploy-model-uri">{doc.links.model_uri}</dd>
          </>
        ) : null}
      </dl>
      <div className="jp-RayDeploy-links">
        {doc.links.dashboard ? (
          <a
            className="jp-RayDeploy-link"
            data-testid="ray-deploy-link-dashboard"
            href={doc.links.dashboard}
            target="_blank"
            rel="noopener noreferrer"
          >
            Ray dashboard (Serve)
          </a>
        ) : null}
        {doc.links.mlflow ? (
          <a
            className="jp-RayDeploy-link"
            data-testid="ray-deploy-link-mlflow"
            href={doc.links.mlflow}
            target="_blank"
            rel="noopener noreferrer"
          >
            MLflow model version
          </a>
        ) : null}
      </div>

      {doc.rollout !== null ? (
        <RolloutBlock
          rollout={doc.rollout}
          busy={busy !== null}
          onPromote={rollout => void onPromote(rollout)}
          onRollback={rollout => void onRollback(rollout)}
        />
      ) : null}
      <RetrainBlock retrain={doc.retrain} autoRetrain={doc.auto_retrain} />
      {doc.drift !== null ? <DriftBlock drift={doc.drift} /> : null}
      {doc.quality !== null ? <QualityBlock quality={doc.quality} /> : null}
      {doc.performance !== null ? <PerformanceBlock performance={doc.performance} /> : null}

      <AuditBlock panel={panel} name={doc.name} version={doc.version} />

      <h4 className="jp-RayDeploy-subTitle">Versions</h4>
      {details === null ? (
        <div className="jp-RayDeploy-muted">Loading…</div>
      ) : (
        <ul className="jp-RayDeploy-versions" data-testid="ray-deploy-versions">
          {details.versions.map(v => (
            <li key={v.version} data-version={v.version} className={v.version === doc.version ? 'jp-mod-serving' : ''}>
              v{v.version}
              {v.aliases.length > 0 ? <span className="jp-RayDeploy-muted"> · {v.aliases.join(', ')}</span> : null}
              {v.created_at !== null ? (
                <span className="jp-RayDeploy-muted"> · {new Date(v.created_at * 1000).toLocaleString()}</span>
              ) : null}
            </li>
          ))}
        </ul>
      )}

      <h4 className="jp-RayDeploy-subTitle">Scale</h4>
      <div className="jp-RayDeploy-scale">
        <label>
          min
          <input
            className="jp-RayDeploy-input"
            data-testid="ray-deploy-scale-min"
            type="number"
            min={0}
            value={minText}
            onChange={event => setMinText(event.target.value)}
          />
        </label>
        <label>
          max
          <input
            className="jp-RayDeploy-input"
            data-testid="ray-deploy-scale-max"
            type="number"
            min={1}
            value={maxText}
            onChange={event => setMaxText(event.target.value)}
          />
        </label>
        <button
          className="jp-RayDeploy-button jp-mod-accept"
          data-testid="ray-deploy-scale-button"
          disabled={!scaleInput.ok || busy !== null}
          onClick={onScale}
        >
          Scale
        </button>
      </div>
      {!scaleInput.ok ? (
        <div className="jp-RayDeploy-error" data-testid="ray-deploy-scale-error">
          {scaleInput.error}
        </div>
      ) : null}

      <div className="jp-RayDeploy-actions">
        <button
          className="jp-RayDeploy-button"
          data-testid="ray-deploy-snippet"
          title={`Insert ray_deploy.get("${doc.name}") into the active notebook`}
          onClick={() => void panel.commands.execute(INSERT_SNIPPET_COMMAND, { name: doc.name })}
        >
          Insert snippet
        </button>
        <button
          className="jp-RayDeploy-button jp-mod-warn"
          data-testid="ray-deploy-delete"
          disabled={busy !== null}
          onClick={() => void onDelete()}
        >
          Delete
        </button>
      </div>
      {busy !== null ? (
        <div className="jp-RayDeploy-muted" data-testid="ray-deploy-busy">
          {busy}…
        </div>
      ) : null}
    </div>
  );
}

/** Starts an action, follows it to its end with a notification, then refreshes the panel. */
async function runAction(panel: RayDeployPanel, label: string, start: () => Promise<IActionDocument>): Promise<void> {
  const finished = (async (): Promise<IActionDocument> => {
    const done = await followAction(panel.model.api, await start());
    if (done.status === 'FAILED') {
      throw new Error(actionSummary(done));
    }
    return done;
  })();
  await withProgress(label, finished, actionSummary);
  await panel.refresh();
}

/**
 * Shows an in-progress notification while `work` runs, then turns it into a success or error one.
 * Returns the result, or null when `work` failed (the error has been shown).
 */
async function withProgress<T>(label: string, work: Promise<T>, success: (result: T) => string): Promise<T | null> {
  const id = Notification.emit(`${label}…`, 'in-progress', { autoClose: false });
  try {
    const result = await work;
    Notification.update({ id, message: success(result), type: 'success', autoClose: 4000 });
    return result;
  } catch (error) {
    Notification.update({ id, message: errorText(error), type: 'error', autoClose: false });
    return null;
  }
}

function errorText(reason: unknown): string {
  return reason instanceof Error ? reason.message : String(reason);
}
