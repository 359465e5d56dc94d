/**
 * The REST client against a real HTTP server on loopback: URLs, methods, bodies, the auth token header,
 * and errors turned into readable messages.
 */
import { ServerConnection } from '@jupyterlab/services';
import * as http from 'http';
import type { AddressInfo } from 'net';

import { ApiError, RayDeployApi } from '../src/api';
import { ACTION, auditTrail, clusterDoc, ERROR, STATUS, statusDoc, VERSIONS } from './fixtures';

interface ISeen {
  method: string;
  /** Path without the query (GET requests carry a cache-busting query string). */
  path: string;
  body: string;
  authorization: string | undefined;
  contentType: string | undefined;
}

type Route = (seen: ISeen) => { status: number; body: string; type?: string };

function json(status: number, data: unknown): { status: number; body: string } {
  return { status, body: JSON.stringify(data) };
}

describe('RayDeployApi', () => {
  let server: http.Server;
  let baseUrl: string;
  let route: Route;
  const seen: ISeen[] = [];

  beforeAll(async () => {
    server = http.createServer((req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', chunk => chunks.push(chunk as Buffer));
      req.on('end', () => {
        const request: ISeen = {
          method: req.method ?? '',
          path: new URL(req.url ?? '', 'http://127.0.0.1').pathname,
          body: Buffer.concat(chunks).toString('utf8'),
          authorization: req.headers.authorization,
          contentType: req.headers['content-type']
        };
        seen.push(request);
        const answer = route(request);
        res.writeHead(answer.status, { 'Content-Type': answer.type ?? 'application/json' });
        res.end(answer.body);
      });
    });
    await new Promise<void>(resolve => server.listen(0, '127.0.0.1', resolve));
    baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/user/me/`;
  });

  afterAll(async () => {
    await new Promise<void>(resolve => server.close(() => resolve()));
  });

  beforeEach(() => {
    seen.length = 0;
  });

  function api(): RayDeployApi {
    return new RayDeployApi(ServerConnection.makeSettings({ baseUrl, token: 'secret-token', appendToken: false }));
  }

  it('gets the cluster under the server base URL with the auth token', async () => {
    route = () => json(200, clusterDoc());
    const cluster = await api().getCluster();
    expect(cluster.dashboard_url).toBe('http://127.0.0.1:8265');
    expect(seen).toHaveLength(1);
    expect(seen[0].method).toBe('GET');
    expect(seen[0].path).toBe('/user/me/ray-deploy/api/cluster');
    expect(seen[0].authorization).toBe('token secret-token');
  });

  it('lists deployments and gets one by an encoded name', async () => {
    route = ({ path }) =>
      path.endsWith('/deployments')
        ? json(200, { deployments: [STATUS] })
        : json(200, { ...statusDoc('my model'), versions: VERSIONS });
    const { deployments } = await api().listDeployments();
    expect(deployments).toEqual([STATUS]);
    const details = await api().getDeployment('my model');
    expect(details.versions).toEqual(VERSIONS);
    expect(seen[1].path).toBe('/user/me/ray-deploy/api/deployments/my%20model');
  });

  it('posts scale bounds as JSON and deletes with DELETE', async () => {
    route = ({ method, path }) =>
      json(202, { ...ACTION, action: method === 'DELETE' ? 'delete' : 'scale', name: path.split('/')[6] });
    const scaled = await api().scale('iris', 1, 3);
    expect(scaled).toEqual(ACTION);
    expect(seen[0]).toMatchObject({
      method: 'POST',
      path: '/user/me/ray-deploy/api/deployments/iris/scale',
      contentType: 'application/json'
    });
    expect(JSON.parse(seen[0].body)).toEqual({ min_replicas: 1, max_replicas: 3 });

    const deleted = await api().deleteDeployment('iris');
    expect(deleted.action).toBe('delete');
    expect(seen[1]).toMatchObject({ method: 'DELETE', path: '/user/me/ray-deploy/api/deployments/iris' });

    await api().getAction(ACTION.action_id);
    expect(seen[2]).toMatchObject({ method: 'GET', path: `/user/me/ray-deploy/api/actions/${ACTION.action_id}` });
    await api().startCluster();
    expect(seen[3]).toMatchObject({ method: 'POST', path: '/user/me/ray-deploy/api/cluster/start' });
  });

  it('posts promote and rollback, with the target version when given', async () => {
    route = ({ path }) => json(202, { ...ACTION, action: path.split('/')[7], name: path.split('/')[6] });
    const promoted = await api().promote('my model');
    expect(promoted.action).toBe('promote');
    expect(seen[0]).toMatchObject({ method: 'POST', path: '/user/me/ray-deploy/api/deployments/my%20model/promote' });
    expect(JSON.parse(seen[0].body)).toEqual({});
    const back = await api().rollback('iris');
    expect(back.action).toBe('rollback');
    expect(seen[1]).toMatchObject({ method: 'POST', path: '/user/me/ray-deploy/api/deployments/iris/rollback' });
    expect(JSON.parse(seen[1].body)).toEqual({});
    await api().rollback('iris', '2');
    expect(JSON.parse(seen[2].body)).toEqual({ to_version: '2' });
  });

  it('gets the audit trail of an encoded name, with since as a query', async () => {
    route = () => json(200, auditTrail());
    const trail = await api().getAudit('my model', 1700000000);
    expect(trail.verification.ok).toBe(true);
    expect(trail.entries[0].prev_hash).toBe('0'.repeat(64));
    expect(seen[0]).toMatchObject({ method: 'GET', path: '/user/me/ray-deploy/api/deployments/my%20model/audit' });
  });

  it("raises the server's error message with its status", async () => {
    route = () => json(404, ERROR);
    const failure = api().getDeployment('nope');
    await expect(failure).rejects.toBeInstanceOf(ApiError);
    await expect(failure).rejects.toMatchObject({ status: 404, message: ERROR.error });
  });

  it('explains a 404 without an error body as a missing server extension', async () => {
    route = () => ({ status: 404, body: '<html>Not Found</html>', type: 'text/html' });
    await expect(api().getCluster()).rejects.toThrow(
      'The ray-deploy server extension is not enabled; run `jupyter server extension enable jupyter_ext`'
    );
  });

  it('rejects a success answer that is not JSON', async () => {
    route = () => ({ status: 200, body: 'hello', type: 'text/plain' });
    await expect(api().getCluster()).rejects.toThrow('GET cluster answered with a body that is not JSON: hello');
  });

  it('says when the Jupyter server cannot be reached', async () => {
    const probe = http.createServer();
    await new Promise<void>(resolve => probe.listen(0, '127.0.0.1', resolve));
    const port = (probe.address() as AddressInfo).port;
    await new Promise<void>(resolve => probe.close(() => resolve()));
    const unreachable = new RayDeployApi(ServerConnection.makeSettings({ baseUrl: `http://127.0.0.1:${port}/` }));
    const failure = unreachable.getCluster();
    await expect(failure).rejects.toMatchObject({ status: 0 });
    await expect(failure).rejects.toThrow(/^Cannot reach the Jupyter server .*check that it is still running\.$/);
  });
});
