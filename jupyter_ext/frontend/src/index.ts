/**
 * The JupyterLab plugin: adds the Ray Deploy side panel and its commands (open, refresh, insert snippet).
 *
 * Example:
 *   Command palette → "Ray Deploy: Open panel"; or `app.commands.execute('ray-deploy:open')`.
 */
import { ILayoutRestorer, type JupyterFrontEnd, type JupyterFrontEndPlugin } from '@jupyterlab/application';
import { Clipboard, ICommandPalette, Notification } from '@jupyterlab/apputils';
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';

import { RayDeployApi } from './api';
import { rayDeployIcon } from './icon';
import { PanelModel, snippetFor } from './model';
import { INSERT_SNIPPET_COMMAND, RayDeployPanel } from './panel';

/** Command ids. */
export const CommandIds = {
  open: 'ray-deploy:open',
  refresh: 'ray-deploy:refresh',
  insertSnippet: INSERT_SNIPPET_COMMAND
} as const;

const PALETTE_CATEGORY = 'Ray Deploy';

/**
 * Puts `ray_deploy.get("<name>")` into a new code cell below the active cell of the current notebook,
 * or onto the clipboard when no notebook is open. Returns where it went.
 */
function insertSnippet(app: JupyterFrontEnd, tracker: INotebookTracker | null, name: string): 'notebook' | 'clipboard' {
  const snippet = snippetFor(name);
  const current = tracker?.currentWidget ?? null;
  if (current === null) {
    Clipboard.copyToSystem(snippet);
    Notification.info(`No notebook is open; copied ${snippet} to the clipboard.`, { autoClose: 4000 });
    return 'clipboard';
  }
  const notebook = current.content;
  NotebookActions.insertBelow(notebook);
  if (notebook.activeCell && notebook.activeCell.model.type !== 'code') {
    NotebookActions.changeCellType(notebook, 'code');
  }
  notebook.activeCell?.model.sharedModel.setSource(snippet);
  app.shell.activateById(current.id);
  return 'notebook';
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'ray-deploy:plugin',
  description: 'Side panel for ray-deploy: cluster status, deployments, scaling and notebook snippets.',
  autoStart: true,
  optional: [ICommandPalette, INotebookTracker, ILayoutRestorer],
  activate: (
    app: JupyterFrontEnd,
    palette: ICommandPalette | null,
    tracker: INotebookTracker | null,
    restorer: ILayoutRestorer | null
  ): void => {
    const model = new PanelModel(new RayDeployApi(app.serviceManager.serverSettings));
    const panel = new RayDeployPanel({ model, commands: app.commands });
    app.shell.add(panel, 'left', { rank: 900 });
    if (restorer) {
      restorer.add(panel, panel.id);
    }

    app.commands.addCommand(CommandIds.open, {
      label: 'Open Ray Deploy panel',
      caption: 'Show the Ray Deploy side panel',
      icon: rayDeployIcon,
      execute: () => app.shell.activateById(panel.id)
    });
    app.commands.addCommand(CommandIds.refresh, {
      label: 'Refresh Ray Deploy panel',
      caption: 'Reload cluster status and deployments now',
      execute: () => panel.refresh()
    });
    app.commands.addCommand(CommandIds.insertSnippet, {
      label: args => (typeof args.name === 'string' ? `Insert ${snippetFor(args.name)}` : 'Insert deployment snippet'),
      caption: 'Insert ray_deploy.get("<name>") in a new cell below the active one',
      execute: args => {
        const name = typeof args.name === 'string' ? args.name : model.selected;
        if (!name) {
          Notification.warning('Select a deployment in the Ray Deploy panel first.', { autoClose: 4000 });
          return;
        }
        return insertSnippet(app, tracker, name);
      }
    });
    if (palette) {
      palette.addItem({ command: CommandIds.open, category: PALETTE_CATEGORY });
      palette.addItem({ command: CommandIds.refresh, category: PALETTE_CATEGORY });
      palette.addItem({ command: CommandIds.insertSnippet, category: PALETTE_CATEGORY });
    }
  }
};

export default plugin;
