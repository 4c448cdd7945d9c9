/*
 * daemon.mjs: starts and stops a real meshscope process for one test file.
 *
 * Each call picks its own free loopback ports and its own temporary database, so test files run
 * in parallel (ctest -j) without sharing anything. The binary is $MESHSCOPE_BIN (set by
 * meshscope_script_test in tests/CMakeLists.txt), else the default build's. Every wait is bounded;
 * stderr is kept (the last 64 KiB) so failures can show what the daemon said.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from './http.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
export const MESHSCOPE_BIN = process.env.MESHSCOPE_BIN || path.resolve(here, '../../../build/collector/meshscope');

const READY_TIMEOUT_MS = 10_000; /* a cold start opens SQLite and binds three sockets: well under 1 s */
const STOP_TIMEOUT_MS = 10_000; /* drain of a full queue; the brief's bound for a clean SIGTERM exit */
const STDERR_KEEP = 64 * 1024;
const BIND_ATTEMPTS = 3; /* the free-port probe races other processes; retry with fresh ports */

/* Children still running when this process exits are killed, so a crashed test leaks nothing. */
const live = new Set();
process.on('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

/** Returns n distinct free TCP ports on 127.0.0.1 (listen on port 0, note the port, close). */
export async function freePorts(n) {
  const servers = [];
  try {
    for (let i = 0; i < n; i++) {
      const srv = createServer();
      await new Promise((resolve, reject) => {
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', resolve);
      });
      servers.push(srv);
    }
    return servers.map((s) => s.address().port);
  } finally {
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  }
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/**
 * Runs the binary with args to completion (for flag-parsing tests). Bounded by timeoutMs; the
 * process is killed past it. Resolves {code, signal, stdout, stderr, timedOut}.
 */
export function runBinary(args, { timeoutMs = 10_000 } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(MESHSCOPE_BIN, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    live.add(child);
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      live.delete(child);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      live.delete(child);
      resolve({ code, signal, stdout, stderr, timedOut });
    });
  });
}

/**
 * Starts meshscope and waits for GET /readyz == 200.
 * opts: {db?: path (reuse a database, e.g. after a restart), dir?: temp dir to reuse,
 *        args?: extra flags, logLevel?: default 'debug'}.
 * Returns {httpUrl, otlpUrl, zipkinUrl, grpcAddr, dir, db, pid, stderr(), stop()}.
 * stop() sends SIGTERM and asserts exit code 0 within 10 s (throws with the stderr tail if not);
 * it removes the temp dir only when the caller asks (cleanup()) so a restart can reuse the db.
 */
export async function startDaemon(opts = {}) {
  const dir = opts.dir ?? (await mkdtemp(path.join(tmpdir(), 'meshscope-js-')));
  const db = opts.db ?? path.join(dir, 'meshscope.db');
  let lastError;
  for (let attempt = 0; attempt < BIND_ATTEMPTS; attempt++) {
    const [httpPort, otlpPort, zipkinPort, grpcPort] = await freePorts(4);
    try {
      return await launch({ dir, db, httpPort, otlpPort, zipkinPort, grpcPort, opts });
    } catch (e) {
      lastError = e;
      /* Retry only when a port was taken between the probe and the bind. */
      if (!/address already in use|EADDRINUSE|bind/i.test(e.message)) break;
    }
  }
  if (!opts.dir) await rm(dir, { recursive: true, force: true });
  throw lastError;
}

async function launch({ dir, db, httpPort, otlpPort, zipkinPort, grpcPort, opts }) {
  const args = [
    '--db', db,
    '--http', `127.0.0.1:${httpPort}`,
    '--otlp-http', `127.0.0.1:${otlpPort}`,
    '--zipkin', `127.0.0.1:${zipkinPort}`,
    '--otlp-grpc', `127.0.0.1:${grpcPort}`,
    '--log-level', opts.logLevel ?? 'debug',
    ...(opts.args ?? []),
  ];
  const child = spawn(MESHSCOPE_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  live.add(child);
  let stderrBuf = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d) => {
    stderrBuf += d;
    if (stderrBuf.length > STDERR_KEEP) stderrBuf = stderrBuf.slice(-STDERR_KEEP);
  });
  let exit = null;
  const exited = new Promise((resolve) => {
    child.on('error', (e) => {
      exit = { code: null, signal: null, error: e };
      live.delete(child);
      resolve(exit);
    });
    child.on('exit', (code, signal) => {
      exit = { code, signal };
      live.delete(child);
      resolve(exit);
    });
  });
  const stderr = () => stderrBuf;
  const describe = () =>
    `${MESHSCOPE_BIN} ${args.join(' ')}\n--- meshscope stderr (tail) ---\n${stderrBuf.slice(-8000)}\n--- end ---`;

  const httpUrl = `http://127.0.0.1:${httpPort}`;
  const deadline = Date.now() + READY_TIMEOUT_MS;
  let ready = false;
  let lastStatus = 'no answer';
  while (Date.now() < deadline) {
    if (exit) {
      throw new Error(
        `meshscope exited before it was ready (code ${exit.code}, signal ${exit.signal}${exit.error ? `, ${exit.error.message}` : ''})\n${describe()}`,
      );
    }
    try {
      const res = await request(`${httpUrl}/readyz`, { timeoutMs: 1000 });
      lastStatus = `HTTP ${res.status}`;
      if (res.status === 200) {
        ready = true;
        break;
      }
    } catch (e) {
      lastStatus = e.code ?? e.message;
    }
    await sleep(50);
  }
  if (!ready) {
    child.kill('SIGKILL');
    await exited;
    throw new Error(`meshscope not ready within ${READY_TIMEOUT_MS} ms (last: ${lastStatus})\n${describe()}`);
  }

  const daemon = {
    httpUrl,
    otlpUrl: `http://127.0.0.1:${otlpPort}`,
    zipkinUrl: `http://127.0.0.1:${zipkinPort}`,
    grpcAddr: `127.0.0.1:${grpcPort}`,
    dir,
    db,
    pid: child.pid,
    args,
    stderr,
    describe,
    /** True while the process runs. */
    alive: () => exit === null,
    /** SIGTERM, then assert a clean exit (code 0) within STOP_TIMEOUT_MS. Idempotent. */
    async stop({ timeoutMs = STOP_TIMEOUT_MS } = {}) {
      if (exit) {
        if (exit.code !== 0) throw new Error(`meshscope had already exited with code ${exit.code}, signal ${exit.signal}\n${describe()}`);
        return exit;
      }
      process.kill(child.pid, 'SIGTERM');
      let timer;
      const res = await Promise.race([exited, new Promise((r) => (timer = setTimeout(() => r(null), timeoutMs)))]);
      clearTimeout(timer);
      if (res === null) {
        child.kill('SIGKILL');
        await exited;
        throw new Error(`meshscope did not exit within ${timeoutMs} ms of SIGTERM\n${describe()}`);
      }
      if (res.code !== 0) throw new Error(`meshscope exited with code ${res.code}, signal ${res.signal} after SIGTERM\n${describe()}`);
      return res;
    },
    /** Kills the process if still running (no assertions) and removes the temp dir. */
    async cleanup() {
      if (!exit) {
        child.kill('SIGKILL');
        await exited;
      }
      if (!opts.dir) await rm(dir, { recursive: true, force: true });
    },
  };
  return daemon;
}

/** Appends the daemon's stderr tail to any error thrown by fn, so a failing assertion shows what the daemon logged. */
export async function withStderr(getDaemon, fn) {
  try {
    return await fn();
  } catch (e) {
    const d = getDaemon();
    if (d && e && typeof e === 'object' && !String(e.message).includes('--- meshscope stderr')) {
      const tail = d.stderr().slice(-4000);
      try {
        e.message += `\n--- meshscope stderr (tail) ---\n${tail}\n--- end ---`;
      } catch {
        /* frozen error objects keep their message */
      }
    }
    throw e;
  }
}
