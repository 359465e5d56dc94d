/**
 * The side panel's icon: a hub with spokes (a Ray "cluster"), themed through JupyterLab's `jp-icon3` class.
 *
 * Example:
 *   widget.title.icon = rayDeployIcon;
 */
import { LabIcon } from '@jupyterlab/ui-components';

/** SVG source of the icon; `jp-icon3` makes it follow the light and dark themes. */
export const RAY_DEPLOY_SVG = `<svg xmlns="http://www.w3.org/2000/svg" width="16" height="16" viewBox="0 0 24 24">
  <g class="jp-icon3" fill="#616161">
    <circle cx="12" cy="12" r="3.2"/>
    <circle cx="12" cy="3" r="2"/>
    <circle cx="12" cy="21" r="2"/>
    <circle cx="4.2" cy="7.5" r="2"/>
    <circle cx="19.8" cy="7.5" r="2"/>
    <circle cx="4.2" cy="16.5" r="2"/>
    <circle cx="19.8" cy="16.5" r="2"/>
    <path d="M11.3 4.8h1.4v4.2h-1.4zM11.3 15h1.4v4.2h-1.4zM5.6 8.6l.7-1.2 3.7 2.1-.7 1.2zM14 14.5l.7-1.2 3.7 2.1-.7 1.2zM5.6 15.4l3.7-2.1.7 1.2-3.7 2.1zM14 9.5l3.7-2.1.7 1.2-3.7 2.1z"/>
  </g>
</svg>`;

/** The LabIcon registered as `ray-deploy:icon`. */
export const rayDeployIcon = new LabIcon({ name: 'ray-deploy:icon', svgstr: RAY_DEPLOY_SVG });
