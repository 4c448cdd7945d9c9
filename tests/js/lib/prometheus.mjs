/*
 * prometheus.mjs: a real Prometheus (Debian's package) on a free loopback port, scraping one
 * meshscope every second, for the tests that read the metrics back through PromQL.
 *
 * The config and the TSDB live in a directory the caller owns (and removes). Exemplar storage is
 * on. Rule files, if given, are evaluated every second.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { freePorts, sleep } from './daemon.mjs';
import { poll, request } from './http.mjs';

const READY_MS = 30_000;

/**
 * Starts prometheus scraping target (host:port) and waits for /-/ready. dir: where
 * prometheus.yml and the TSDB (dir/prom) go; ruleFiles: absolute paths, evaluated every second.
 * Returns {proc, url, log(), exited(), stop(), api(), queryRaw(), query(), until(), exemplars()}.
 */
export async function startPrometheus({ dir, target, ruleFiles = [] }) {
  const [port] = await freePorts(1);
  const config = path.join(dir, 'prometheus.yml');
  const rules = ruleFiles.length === 0 ? [] : [
    '  evaluation_interval: 1s',
    'rule_files:',
    ...ruleFiles.map((f) => `  - ${JSON.stringify(f)}`),
  ];
  await writeFile(config, [
    'global:',
    '  scrape_interval: 1s',
    '  scrape_timeout: 900ms',
    ...rules,
    'scrape_configs:',
    '  - job_name: meshscope',
    '    static_configs:',
    `      - targets: ['${target}']`,
    '',
  ].join('\n'));
  const proc = spawn('prometheus', [
    `--config.file=${config}`,
    `--storage.tsdb.path=${path.join(dir, 'prom')}`,
    `--web.listen-address=127.0.0.1:${port}`,
    '--enable-feature=exemplar-storage',
    '--log.level=warn',
  ], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (s) => (log = (log + s).slice(-16_000)));
  let exited = null;
  proc.on('exit', (code, signal) => (exited = { code, signal }));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + READY_MS;
  for (;;) {
    if (exited) throw new Error(`prometheus exited (${JSON.stringify(exited)}):\n${log}`);
    try {
      if ((await request(`${url}/-/ready`, { timeoutMs: 1000 })).status === 200) break;
    } catch {
      /* not listening yet */
    }
    if (Date.now() > deadline) throw new Error(`prometheus not ready within ${READY_MS} ms:\n${log}`);
    await sleep(200);
  }

  /** GET an API path; resolves the parsed JSON body (whatever its status). */
  async function api(pathAndQuery) {
    const res = await request(`${url}${pathAndQuery}`);
    const text = res.body.toString('utf8');
    try {
      return JSON.parse(text);
    } catch {
      throw new Error(`GET ${pathAndQuery}: HTTP ${res.status}: ${text.slice(0, 500)}`);
    }
  }

  /** Instant query; resolves {ok, error, result}. */
  async function queryRaw(q) {
    const body = await api(`/api/v1/query?query=${encodeURIComponent(q)}`);
    return body.status === 'success' ? { ok: true, result: body.data.result } : { ok: false, error: `${body.errorType}: ${body.error}` };
  }

  /** Instant query that must succeed; resolves the result vector. */
  async function query(q) {
    const r = await queryRaw(q);
    assert.ok(r.ok, `query ${q}: ${r.error}`);
    return r.result;
  }

  /**
   * Polls a query until check(result) holds (scrapes land once a second); the last result is in
   * the failure message. opts: poll()'s {timeoutMs, intervalMs, attempts}.
   */
  async function until(q, check, what, { timeoutMs = 30_000, intervalMs = 500, attempts = 100 } = {}) {
    let last;
    try {
      return await poll(what, async () => {
        last = await query(q);
        return check(last) ? last : undefined;
      }, { timeoutMs, intervalMs, attempts });
    } catch (e) {
      e.message += `\nlast result of ${q}: ${JSON.stringify(last)?.slice(0, 2000)}`;
      throw e;
    }
  }

  /** The body of /api/v1/query_exemplars for q over [start, end] (seconds). */
  const exemplars = (q, start, end) => api(`/api/v1/query_exemplars?query=${encodeURIComponent(q)}&start=${start}&end=${end}`);

  /** SIGTERM, up to 10 s for it to exit, then SIGKILL. */
  async function stop() {
    if (exited) return;
    proc.kill('SIGTERM');
    await Promise.race([new Promise((r) => proc.once('exit', r)), sleep(10_000)]);
    if (!exited) proc.kill('SIGKILL');
  }

  return { proc, url, log: () => log, exited: () => exited, stop, api, queryRaw, query, until, exemplars };
}
