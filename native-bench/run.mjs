#!/usr/bin/env node
// native-bench/run.mjs: race ugate against nginx, HAProxy, a plain Node proxy
// and the direct upstream, on this machine, in one run.
//
// Plain Node ESM with no dependencies so it runs without a build step.
// `node native-bench/run.mjs --help` for options; README.md for what the
// numbers mean.
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(HERE, '..');
const WRK_DIR = path.join(HERE, 'wrk');
const UPSTREAM_BIN = path.join(HERE, 'build', 'upstream');
const UGATE_CLI = path.join(ROOT, 'dist', 'src', 'cli.js');
const NOFILE = 65536; // c10k needs >10k fds in wrk and ~2x that in a proxy
let fdLimit = NOFILE; // what children really get; measured in main()

const SCENARIOS = {
  small: { path: '/small', connections: 64, desc: 'GET /small, 101 B body', short: 'GET 101 B' },
  '64k': { path: '/bytes/65536', connections: 64, desc: 'GET 64 KiB body', short: 'GET 64 KiB' },
  '1m': { path: '/bytes/1048576', connections: 16, desc: 'GET 1 MiB body, streamed', short: 'GET 1 MiB' },
  post1k: { path: '/echo', connections: 64, script: 'post1k.lua', desc: 'POST 1 KiB body to /echo, echoed back', short: 'POST 1 KiB echo' },
  // wrk's default 2 s timeout is too short while 10k connections handshake.
  c10k: { path: '/small', connections: 10000, timeout: '10s', desc: 'GET /small, 101 B body, every connection kept alive', short: 'GET 101 B, keep-alive' },
  // Cacheable responses: proxies with a cache answer hits themselves; without, every request
  // goes upstream. Only these targets run it.
  cached: { path: '/cached', connections: 64, desc: 'GET /cached, 101 B body, Cache-Control: public, max-age=3600', short: 'GET 101 B, cacheable',
    targets: ['upstream', 'ugate-1w', 'ugate-cache', 'nginx', 'nginx-cache'] },
};
const QUICK_SCENARIOS = ['small', 'post1k'];
const TARGETS = ['upstream', 'uws-floor', 'ugate-1w', 'ugate-2w', 'ugate-pipe', 'nginx', 'haproxy', 'node-baseline', 'ugate-cache', 'nginx-cache'];
/** ugate-pipe: one worker with upstream pipelining (opt-in; nginx and HAProxy do not pipeline). */
const PIPE_DEPTH = 16;
/** Targets that only make sense in scenarios naming them (SCENARIOS[x].targets). */
const SCENARIO_ONLY_TARGETS = new Set(['ugate-cache', 'nginx-cache']);

function runsIn(scenario, target) {
  const only = SCENARIOS[scenario].targets;
  return only ? only.includes(target) : !SCENARIO_ONLY_TARGETS.has(target);
}
const COLORS = {
  upstream: '#9e9e9e',
  'uws-floor': '#d4c5a9',
  'ugate-1w': '#f4a261',
  'ugate-2w': '#e76f51',
  'ugate-pipe': '#c1121f',
  nginx: '#2a9d8f',
  haproxy: '#457b9d',
  'node-baseline': '#8d6cab',
  'ugate-cache': '#ffb703',
  'nginx-cache': '#1d5c55',
};

const HELP = `usage: node native-bench/run.mjs [options]

Races reverse proxies in front of a native C upstream with wrk, on 127.0.0.1.

  --scenario LIST     comma list of ${Object.keys(SCENARIOS).join(',')} or "all" (default all)
  --targets LIST      comma list of ${TARGETS.join(',')} or "all" (default all)
  --duration T        measured run length, e.g. 10s, 1m (default 10s)
  --warmup T          warm-up run before every measured run, 0 to skip (default 2s)
  --repeats N         measured runs per target and scenario; the median is reported,
                      target order rotates every repeat (default 3)
  --connections N     override every scenario's connection count
  --threads N         wrk threads, 1 or 2 (default 1: leaves a core for the proxy)
  --upstream-threads N  event-loop threads in the C upstream (default 1)
  --quick             small + post1k, 2s runs, 1 repeat, 1s warm-up, every target but
                      ugate-2w (under a minute);
                      explicit options above still win
  --out DIR           results folder (default native-bench/results/<timestamp>)
  --json              print results JSON on stdout instead of the Markdown tables
  --render DIR        only rebuild results.md and chart.svg from DIR/results.json
  --help              this text

Scenarios:
${Object.entries(SCENARIOS).map(([k, s]) => `  ${k.padEnd(8)} ${s.desc}, ${s.connections} connections`).join('\n')}

Writes results.json, results.md, chart.svg and logs/ into the out folder.
Progress goes to stderr, results to stdout.`;

// ---------------------------------------------------------------- options

function parseDuration(s, name) {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(String(s).trim());
  if (!m) fail(`bad ${name}: ${s} (use e.g. 10s, 1m, 500ms)`);
  const n = Number(m[1]);
  return m[2] === 'ms' ? n / 1000 : m[2] === 'm' ? n * 60 : n;
}

function parseList(s, all, what) {
  if (s === 'all') return [...all];
  const list = s.split(',').map((x) => x.trim()).filter(Boolean);
  for (const x of list) if (!all.includes(x)) fail(`unknown ${what} "${x}" (choose from ${all.join(', ')})`);
  return list;
}

function parseArgs(argv) {
  const given = {};
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    if (a.includes('=')) [a, v] = [a.slice(0, a.indexOf('=')), a.slice(a.indexOf('=') + 1)];
    const flag = ['--quick', '--json', '--help', '-h'].includes(a);
    if (!flag && v === undefined) {
      v = argv[++i];
      if (v === undefined) fail(`${a} needs a value`);
    }
    switch (a) {
      case '--help': case '-h': process.stdout.write(HELP + '\n'); process.exit(0); break;
      case '--quick': given.quick = true; break;
      case '--json': given.json = true; break;
      case '--scenario': case '--scenarios': given.scenarios = parseList(v, Object.keys(SCENARIOS), 'scenario'); break;
      case '--targets': case '--target': given.targets = parseList(v, TARGETS, 'target'); break;
      case '--duration': given.duration = parseDuration(v, '--duration'); break;
      case '--warmup': given.warmup = parseDuration(v, '--warmup'); break;
      case '--repeats': given.repeats = posInt(v, a); break;
      case '--connections': given.connections = posInt(v, a); break;
      case '--threads': given.threads = posInt(v, a); break;
      case '--upstream-threads': given.upstreamThreads = posInt(v, a); break;
      case '--out': given.out = path.resolve(v); break;
      case '--render': given.render = path.resolve(v); break;
      default: fail(`unknown option ${a} (see --help)`);
    }
  }
  const q = given.quick;
  const opts = {
    scenarios: given.scenarios ?? (q ? QUICK_SCENARIOS : Object.keys(SCENARIOS)),
    // Always in the canonical order so tables and charts line up across runs.
    // Quick runs leave out ugate-2w (on a 2-core box its second worker competes with wrk) to
    // stay under a minute.
    targets: TARGETS.filter((t) => (given.targets ?? (q ? TARGETS.filter((x) => x !== 'ugate-2w') : TARGETS)).includes(t)),
    duration: given.duration ?? (q ? 2 : 10),
    warmup: given.warmup ?? (q ? 1 : 2),
    repeats: given.repeats ?? (q ? 1 : 3),
    connections: given.connections,
    threads: given.threads ?? 1,
    upstreamThreads: given.upstreamThreads ?? 1,
    quick: !!q,
    json: !!given.json,
    render: given.render,
  };
  const stamp = new Date().toISOString().replace(/[:.]/g, '-').replace(/-\d+Z$/, 'Z');
  opts.out = given.out ?? path.join(HERE, 'results', stamp);
  if (opts.duration < 1) fail('--duration must be at least 1s (wrk counts whole seconds)');
  return opts;
}

function posInt(v, name) {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) fail(`${name} must be a positive integer`);
  return n;
}

// ---------------------------------------------------------------- logging

function log(msg) {
  process.stderr.write(msg + '\n');
}
function fail(msg) {
  log(`error: ${msg}`);
  process.exit(2);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// ---------------------------------------------------------------- child processes
// Every process we start is spawned detached (its own process group, whose id
// is its pid), so cleanup can signal exactly that group: nginx's worker and
// any ugate worker processes go with their parent, and nothing else is hit.

const children = new Map(); // pid -> { name, exited, code }
let tmpDir = null;
let logDir = null;
let cleaningUp = false;

// bash raises the fd limit for the child (root may raise the hard limit too),
// then execs so the pid we hold is the real program's.
const ULIMIT_WRAPPER = `ulimit -n ${NOFILE} 2>/dev/null || ulimit -n "$(ulimit -Hn)"; exec "$@"`;

function startProcess(name, cmd, args, { cwd = ROOT, logFile } = {}) {
  const fd = fs.openSync(logFile, 'a');
  const child = spawn('bash', ['-c', ULIMIT_WRAPPER, 'bash', cmd, ...args], {
    cwd,
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  fs.closeSync(fd);
  const rec = { name, pid: child.pid, exited: false, code: null };
  children.set(child.pid, rec);
  child.on('exit', (code, signal) => {
    rec.exited = true;
    rec.code = code ?? signal;
    if (!cleaningUp) log(`  ! ${name} (pid ${child.pid}) exited (${rec.code}); log: ${logFile}`);
  });
  return rec;
}

function killGroup(pid, sig) {
  try {
    process.kill(-pid, sig);
  } catch {
    try { process.kill(pid, sig); } catch { /* already gone */ }
  }
}

async function stopProcess(rec) {
  if (rec.exited) return;
  killGroup(rec.pid, 'SIGTERM');
  for (let i = 0; i < 30 && !rec.exited; i++) await sleep(100);
  if (!rec.exited) killGroup(rec.pid, 'SIGKILL');
  for (let i = 0; i < 20 && !rec.exited; i++) await sleep(50);
  // The group may still hold children (e.g. an nginx worker) after the
  // leader exits; make sure they are gone too.
  killGroup(rec.pid, 'SIGKILL');
}

async function cleanup() {
  if (cleaningUp) return;
  cleaningUp = true;
  await Promise.all([...children.values()].map(stopProcess));
  if (tmpDir) {
    try {
      if (logDir) {
        fs.mkdirSync(logDir, { recursive: true });
        for (const f of fs.readdirSync(tmpDir)) {
          if (f.endsWith('.log') || f.endsWith('.conf') || f.endsWith('.cfg')) {
            fs.copyFileSync(path.join(tmpDir, f), path.join(logDir, f));
          }
        }
      }
    } catch { /* logs are a convenience */ }
    fs.rmSync(tmpDir, { recursive: true, force: true });
    tmpDir = null;
  }
}

// Last resort if something calls process.exit() before cleanup finished.
process.on('exit', () => {
  for (const rec of children.values()) if (!rec.exited) killGroup(rec.pid, 'SIGKILL');
  if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
});

// ---------------------------------------------------------------- tools

function findTool(name) {
  // nginx and haproxy live in /usr/sbin, which a non-root PATH may lack.
  const dirs = [...(process.env.PATH || '').split(':'), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const d of dirs) {
    if (!d) continue;
    const p = path.join(d, name);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* keep looking */ }
  }
  return null;
}

function ensureTools(opts) {
  const wantNginx = opts.targets.includes('nginx') || opts.targets.includes('nginx-cache');
  const wantHaproxy = opts.targets.includes('haproxy');
  const pkgs = [];
  if (!findTool('wrk')) pkgs.push('wrk');
  if (wantNginx && !findTool('nginx')) pkgs.push('nginx-light');
  if (wantHaproxy && !findTool('haproxy')) pkgs.push('haproxy');
  if (pkgs.length && process.getuid?.() === 0 && findTool('apt-get')) {
    log(`installing ${pkgs.join(' ')} with apt-get ...`);
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const run = (args) => spawnSync('apt-get', args, { stdio: ['ignore', 'ignore', 'inherit'], env }).status === 0;
    run(['update', '-qq']);
    // One at a time so that a missing optional package does not block wrk.
    if (!run(['install', '-y', '-qq', ...pkgs])) for (const p of pkgs) run(['install', '-y', '-qq', p]);
  } else if (pkgs.length) {
    log(`missing ${pkgs.join(', ')} and not root: install them (apt-get install -y ${pkgs.join(' ')})`);
  }
  const tools = { wrk: findTool('wrk'), nginx: findTool('nginx'), haproxy: findTool('haproxy') };
  if (!tools.wrk) fail('wrk is required (apt-get install -y wrk)');
  return tools;
}

function toolVersion(cmd, args) {
  if (!cmd) return null;
  const r = spawnSync(cmd, args, { encoding: 'utf8' });
  const text = `${r.stdout || ''}${r.stderr || ''}`.trim().split('\n')[0] || '';
  return text.replace(/\s+Copyright.*$/, '').trim() || null;
}

function buildUpstream() {
  log('building native upstream ...');
  let r = findTool('make')
    ? spawnSync('make', ['-s', '-C', HERE, 'build/upstream'], { stdio: ['ignore', 'inherit', 'inherit'] })
    : null;
  if (!r || r.status !== 0) {
    fs.mkdirSync(path.dirname(UPSTREAM_BIN), { recursive: true });
    r = spawnSync('cc', ['-O2', '-Wall', '-Wextra', '-std=gnu11', '-o', UPSTREAM_BIN, path.join(HERE, 'upstream.c'), '-pthread'], {
      stdio: ['ignore', 'inherit', 'inherit'],
    });
  }
  if (r.status !== 0) fail('could not build native-bench/upstream.c (is a C compiler installed?)');
}

// The fd limit children end up with: root without CAP_SYS_RESOURCE (e.g. in
// a container) cannot raise the hard limit, so configs must fit what we get.
function measureFdLimit() {
  const r = spawnSync('bash', ['-c', ULIMIT_WRAPPER, 'bash', 'bash', '-c', 'ulimit -n'], { encoding: 'utf8' });
  const n = Number(String(r.stdout).trim());
  return Number.isFinite(n) && n > 0 ? Math.min(n, NOFILE) : 1024;
}

// HAProxy refuses to start unless 2 * maxconn + a few fds fit in the limit.
const haproxyMaxconn = () => Math.min(30000, Math.floor((fdLimit - 100) / 2));

// ---------------------------------------------------------------- network helpers

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// One request on a fresh connection; resolves { status, body } or rejects.
function httpRequest(port, method, urlPath, body, timeoutMs = 3000) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: urlPath, agent: false, timeout: timeoutMs,
        headers: body ? { 'content-type': 'application/octet-stream', 'content-length': body.length } : {} },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end(body);
  });
}

async function waitForLine(file, re, timeoutMs, rec) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const m = re.exec(fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '');
    if (m) return m;
    if (rec?.exited) return null;
    await sleep(50);
  }
  return null;
}

// Ready = the port answers GET /small with 200 (so the path to the upstream works).
async function waitReady(port, rec, timeoutMs = 10_000) {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  while (Date.now() < deadline) {
    if (rec?.exited) return `process exited (${rec.code})`;
    try {
      const r = await httpRequest(port, 'GET', '/small', null, 1000);
      if (r.status === 200) return null;
      last = `status ${r.status}`;
    } catch (e) {
      last = e.code || e.message;
    }
    await sleep(100);
  }
  return `not ready after ${timeoutMs / 1000}s (${last})`;
}

// Check the target really proxies bodies intact before we time it: a proxy
// that truncates 1 MiB responses must not get credit for its speed.
async function checkCorrect(port) {
  const big = await httpRequest(port, 'GET', '/bytes/1048576', null, 10_000);
  if (big.status !== 200 || big.body.length !== 1048576) return `GET /bytes/1048576 gave ${big.status}, ${big.body.length} bytes`;
  const payload = Buffer.alloc(1024, 'native-bench');
  const echo = await httpRequest(port, 'POST', '/echo', payload, 5000);
  if (echo.status !== 200 || !echo.body.equals(payload)) return `POST /echo gave ${echo.status}, ${echo.body.length} bytes (not the 1 KiB sent)`;
  return null;
}

// ---------------------------------------------------------------- /proc accounting

const CLK_TCK = Number(spawnSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).stdout) || 100;

// Fields after "(comm)": state ppid ... utime(14) stime(15), 1-based in proc(5).
function readStat(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { ppid: Number(f[1]), cpuTicks: Number(f[11]) + Number(f[12]) };
  } catch {
    return null;
  }
}

// The process and all its live descendants (nginx master + worker, ...).
function processTree(rootPid) {
  const kids = new Map();
  for (const d of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const st = readStat(d);
    if (!st) continue;
    if (!kids.has(st.ppid)) kids.set(st.ppid, []);
    kids.get(st.ppid).push(Number(d));
  }
  const out = [];
  const todo = [rootPid];
  while (todo.length) {
    const p = todo.pop();
    out.push(p);
    for (const c of kids.get(p) || []) todo.push(c);
  }
  return out;
}

function cpuTicks(pids) {
  const m = new Map();
  for (const p of pids) {
    const st = readStat(p);
    if (st) m.set(p, st.cpuTicks);
  }
  return m;
}

function cpuDeltaSeconds(before, after) {
  let ticks = 0;
  for (const [p, t] of after) ticks += t - (before.get(p) ?? 0);
  return ticks / CLK_TCK;
}

function rssKb(pids) {
  let kb = 0;
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch { /* exited */ }
  }
  return kb;
}

// ---------------------------------------------------------------- targets

async function startUpstream(opts) {
  const logFile = path.join(tmpDir, 'upstream.log');
  const rec = startProcess('upstream', UPSTREAM_BIN, ['--port', '0', '--threads', String(opts.upstreamThreads)], { logFile });
  const m = await waitForLine(logFile, /listening (\d+)/, 5000, rec);
  if (!m) fail(`native upstream did not start; see ${logFile}:\n${fs.readFileSync(logFile, 'utf8')}`);
  return { name: 'upstream', rec, port: Number(m[1]) };
}

function nginxConf(port, upstreamPort, { name = 'nginx', cache = false } = {}) {
  const t = tmpDir;
  const cacheHttp = cache ? `    proxy_cache_path ${t}/${name}-cache keys_zone=bench:64m max_size=256m inactive=1h;\n` : '';
  const cacheLoc = cache ? '            proxy_cache bench;\n            add_header X-Cache $upstream_cache_status;\n' : '';
  return `# generated by native-bench/run.mjs
worker_processes 1;
daemon off;
master_process on;
${process.getuid?.() === 0 ? 'user root;  # workers must reach the 0700 temp dir\n' : ''}pid ${t}/${name}.pid;
error_log ${t}/${name}-error.log warn;
worker_rlimit_nofile ${fdLimit};

events {
    # counts client and upstream connections together
    worker_connections ${fdLimit - 64};
    use epoll;
}

http {
    access_log off;
    client_body_temp_path ${t}/${name}-client-body;
    proxy_temp_path ${t}/${name}-proxy;
    fastcgi_temp_path ${t}/${name}-fastcgi;
    uwsgi_temp_path ${t}/${name}-uwsgi;
    scgi_temp_path ${t}/${name}-scgi;
${cacheHttp}

    # nginx closes client connections after 1000 requests by default; the
    # other proxies do not, so lift it to compare like with like.
    keepalive_requests 10000000;
    keepalive_timeout 65s;

    # Stream large responses through memory buffers instead of spooling them
    # to temp files: every other target streams.
    proxy_buffers 16 16k;
    proxy_max_temp_file_size 0;

    upstream backend {
        server 127.0.0.1:${upstreamPort};
        keepalive 64;
        keepalive_requests 10000000;
    }

    server {
        listen 127.0.0.1:${port} backlog=4096;
        location / {
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # ugate adds X-Forwarded-For by default: every proxy here tells the backend
            # who the client is, so they do the same work.
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
${cacheLoc}        }
    }
}
`;
}

function haproxyCfg(port, upstreamPort) {
  return `# generated by native-bench/run.mjs
global
    nbthread 1
    maxconn ${haproxyMaxconn()}

defaults
    mode http
    maxconn ${haproxyMaxconn()}
    timeout connect 5s
    timeout client 60s
    timeout server 60s
    timeout http-keep-alive 60s
    http-reuse always
    option forwardfor

frontend fe
    bind 127.0.0.1:${port}
    default_backend be

backend be
    server s1 127.0.0.1:${upstreamPort}
`;
}

// Returns { name, rec, port } or { name, skip: reason }.
async function startTarget(name, upstream, tools) {
  if (name === 'upstream') {
    const wrong = await checkCorrect(upstream.port).catch((e) => e.message);
    return wrong ? { name, skip: wrong } : upstream;
  }
  const port = await freePort();
  const logFile = path.join(tmpDir, `${name}.log`);
  let rec;
  const readyTimeout = 10_000;
  if (name === 'nginx' || name === 'nginx-cache') {
    if (!tools.nginx) return { name, skip: 'nginx not installed (apt-get install -y nginx-light)' };
    const conf = path.join(tmpDir, `${name}.conf`);
    fs.writeFileSync(conf, nginxConf(port, upstream.port, { name, cache: name === 'nginx-cache' }));
    // -p/-c/-e keep nginx away from /etc/nginx and /var/log/nginx entirely.
    rec = startProcess(name, tools.nginx, ['-p', tmpDir + '/', '-c', conf, '-e', path.join(tmpDir, `${name}-error.log`)], { logFile });
  } else if (name === 'haproxy') {
    if (!tools.haproxy) return { name, skip: 'haproxy not installed (apt-get install -y haproxy)' };
    const cfg = path.join(tmpDir, 'haproxy.cfg');
    fs.writeFileSync(cfg, haproxyCfg(port, upstream.port));
    rec = startProcess('haproxy', tools.haproxy, ['-db', '-f', cfg], { logFile });
  } else if (name === 'node-baseline' || name === 'uws-floor') {
    rec = startProcess(name, process.execPath, [path.join(HERE, `${name}.mjs`), '--listen', `127.0.0.1:${port}`, '--upstream', `http://127.0.0.1:${upstream.port}`], { logFile });
  } else if (name.startsWith('ugate-')) {
    if (!fs.existsSync(UGATE_CLI)) {
      return { name, skip: `${path.relative(ROOT, UGATE_CLI)} not found (build it: npx tsc -p tsconfig.json in ${ROOT})` };
    }
    const workers = name === 'ugate-2w' ? '2' : '1';
    const extra = name === 'ugate-cache' ? ['--cache-size', '64mb'] : name === 'ugate-pipe' ? ['--pipelining', String(PIPE_DEPTH)] : [];
    rec = startProcess(name, process.execPath, [UGATE_CLI, '--listen', `127.0.0.1:${port}`, '--admin', '127.0.0.1:0', '--upstream', `http://127.0.0.1:${upstream.port}`, '--workers', workers, ...extra], { logFile });
  } else {
    throw new Error(`unknown target ${name}`);
  }
  const notReady = await waitReady(port, rec, readyTimeout);
  // The first error line says more than the tail of a native stack trace.
  const tail = () => {
    const lines = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').trim().split('\n') : [];
    const i = lines.findIndex((l) => /error|alert|emerg|fatal/i.test(l));
    return (i >= 0 ? lines.slice(i, i + 2) : lines.slice(-3)).map((l) => l.trim()).join(' | ') + ` (full log: logs/${name}.log)`;
  };
  if (notReady) {
    await stopProcess(rec);
    return { name, skip: `${notReady}; log: ${tail()}` };
  }
  let wrong;
  try {
    wrong = await checkCorrect(port);
  } catch (e) {
    wrong = `correctness check failed: ${e.message}`;
  }
  if (wrong) {
    await stopProcess(rec);
    return { name, skip: `${wrong}` };
  }
  return { name, rec, port };
}

// ---------------------------------------------------------------- wrk

function runWrk(tools, opts, scenario, port, seconds) {
  const sc = SCENARIOS[scenario];
  const connections = opts.connections ?? sc.connections;
  const threads = Math.min(opts.threads, connections);
  const args = ['-t', String(threads), '-c', String(connections), '-d', `${Math.max(1, Math.round(seconds))}s`, '--latency',
    '-s', path.join(WRK_DIR, sc.script ?? 'report.lua')];
  if (sc.timeout) args.push('--timeout', sc.timeout);
  args.push(`http://127.0.0.1:${port}${sc.path}`);
  return new Promise((resolve) => {
    const child = spawn('bash', ['-c', ULIMIT_WRAPPER, 'bash', tools.wrk, ...args], { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    const rec = { name: 'wrk', pid: child.pid, exited: false };
    children.set(child.pid, rec);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    // wrk stops by itself after -d; this guard only fires if it hangs.
    const guard = setTimeout(() => killGroup(child.pid, 'SIGKILL'), (seconds + 30) * 1000);
    child.on('close', (code) => {
      clearTimeout(guard);
      rec.exited = true;
      children.delete(child.pid);
      const line = out.split('\n').find((l) => l.startsWith('WRK_JSON '));
      if (!line) return resolve({ error: `wrk exited ${code}: ${out.trim().split('\n').slice(-3).join(' | ')}` });
      resolve({ result: JSON.parse(line.slice('WRK_JSON '.length)), connections, threads });
    });
  });
}

// One measured run with CPU and RSS accounting around it.
async function measuredRun(tools, opts, scenario, target, upstream) {
  if (opts.warmup > 0) {
    await runWrk(tools, opts, scenario, target.port, opts.warmup);
    await sleep(300);
  }
  const tree = processTree(target.rec.pid);
  const upTree = target.name === 'upstream' ? null : processTree(upstream.rec.pid);
  const cpuBefore = cpuTicks(tree);
  const upBefore = upTree ? cpuTicks(upTree) : null;
  // VmHWM is a lifetime peak and would carry over from earlier scenarios,
  // so sample VmRSS during this run instead.
  let peakKb = rssKb(tree);
  const sampler = setInterval(() => (peakKb = Math.max(peakKb, rssKb(tree))), 200);
  const started = Date.now();
  const w = await runWrk(tools, opts, scenario, target.port, opts.duration);
  clearInterval(sampler);
  peakKb = Math.max(peakKb, rssKb(tree));
  const wall = (Date.now() - started) / 1000;
  const after = cpuTicks(processTree(target.rec.pid));
  if (w.error) return { error: w.error };
  const r = w.result;
  const cpu = cpuDeltaSeconds(cpuBefore, after);
  const upCpu = upTree ? cpuDeltaSeconds(upBefore, cpuTicks(upTree)) : null;
  const k = r.requests / 1000;
  const sockErrors = r.errors.connect + r.errors.read + r.errors.write + r.errors.timeout;
  return {
    connections: w.connections,
    wrkThreads: w.threads,
    requests: r.requests,
    durationS: r.duration_us / 1e6,
    rps: r.rps,
    bytes: r.bytes,
    latencyUs: r.latency_us,
    errors: r.errors,
    socketErrors: sockErrors,
    non2xx: r.non2xx,
    cpuSeconds: cpu,
    cpuPer1k: k > 0 ? cpu / k : null,
    cpuUtilization: cpu / wall, // cores busy on average
    upstreamCpuPer1k: upCpu !== null && k > 0 ? upCpu / k : null,
    peakRssMB: peakKb / 1024,
    processes: tree.length,
  };
}

// ---------------------------------------------------------------- aggregation

function median(xs) {
  const v = xs.filter((x) => typeof x === 'number' && Number.isFinite(x)).sort((a, b) => a - b);
  if (!v.length) return null;
  const m = v.length >> 1;
  return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
}

function summarize(runs) {
  const ok = runs.filter((r) => !r.error);
  if (!ok.length) return { runs: runs.length, failed: runs.length, error: runs[0]?.error ?? 'no runs' };
  const pick = (f) => median(ok.map(f));
  return {
    runs: runs.length,
    failed: runs.length - ok.length,
    rps: pick((r) => r.rps),
    rpsMin: Math.min(...ok.map((r) => r.rps)),
    rpsMax: Math.max(...ok.map((r) => r.rps)),
    p50Us: pick((r) => r.latencyUs.p50),
    p99Us: pick((r) => r.latencyUs.p99),
    p999Us: pick((r) => r.latencyUs.p999),
    // Errors are summed over all repeats: a median would hide a bad run.
    socketErrors: ok.reduce((a, r) => a + r.socketErrors, 0),
    non2xx: ok.reduce((a, r) => a + r.non2xx, 0),
    cpuPer1k: pick((r) => r.cpuPer1k),
    cpuUtilization: pick((r) => r.cpuUtilization),
    upstreamCpuPer1k: pick((r) => r.upstreamCpuPer1k),
    peakRssMB: pick((r) => r.peakRssMB),
  };
}

function addRatios(byTarget) {
  const ng = byTarget.nginx;
  for (const s of Object.values(byTarget)) {
    s.rpsVsNginx = ng?.rps && s.rps ? s.rps / ng.rps : null;
    s.cpuVsNginx = ng?.cpuPer1k && s.cpuPer1k ? s.cpuPer1k / ng.cpuPer1k : null;
  }
}

// ---------------------------------------------------------------- formatting

const fmtInt = (n) => (n == null ? '–' : Math.round(n).toLocaleString('en-US'));
const fmtLat = (us) => (us == null ? '–' : us < 1000 ? `${Math.round(us)} µs` : `${(us / 1000).toFixed(us < 10_000 ? 2 : 1)} ms`);
const fmtRatio = (x) => (x == null ? '–' : `${x.toFixed(2)}×`);
const fmtCpu = (x) => (x == null ? '–' : x.toPrecision(3));
const fmtMB = (x) => (x == null ? '–' : x.toFixed(1));
function fmtErrors(s) {
  if (s.socketErrors == null) return '–';
  if (!s.socketErrors && !s.non2xx) return '0';
  const parts = [];
  if (s.socketErrors) parts.push(`${fmtInt(s.socketErrors)} socket`);
  if (s.non2xx) parts.push(`${fmtInt(s.non2xx)} non-2xx`);
  return `**${parts.join(', ')}**`;
}
function fmtShort(n) {
  const trim = (s) => s.replace(/\.0$/, '');
  if (n >= 1e6) return `${trim((n / 1e6).toFixed(n >= 1e7 ? 0 : 1))}M`;
  if (n >= 1e3) return `${trim((n / 1e3).toFixed(n >= 1e5 ? 0 : 1))}k`;
  return String(Math.round(n));
}

function markdown(report) {
  const { meta, scenarios, skipped } = report;
  const lines = [];
  lines.push('# native-bench results', '');
  lines.push(`- Date: ${meta.date}`);
  lines.push(`- Node: ${meta.node}`);
  lines.push(`- CPU: ${meta.cpuModel}, ${meta.cores} cores`);
  lines.push(`- Kernel: ${meta.kernel}`);
  lines.push(`- Tools: ${[meta.tools.wrk, meta.tools.nginx, meta.tools.haproxy].filter(Boolean).join('; ')}`);
  lines.push(`- Runs: ${meta.settings.duration}s measured after ${meta.settings.warmup}s warm-up, median of ${meta.settings.repeats}, wrk -t ${meta.settings.threads}, upstream threads ${meta.settings.upstreamThreads}, open-file limit ${meta.settings.fdLimit}`);
  for (const [t, why] of Object.entries(skipped)) lines.push(`- Skipped ${t}: ${why}`);
  lines.push('');
  lines.push('CPU s/1k req = CPU seconds (user+system) the target process tree spent per 1,000 requests; lower is better. ' +
    'Errors are summed over all repeats. Ratios are against nginx (RPS: higher is better; CPU: lower is better).', '');
  for (const [name, sc] of Object.entries(scenarios)) {
    lines.push(`## ${name}: ${sc.desc}, ${sc.connections} connections`, '');
    lines.push('| target | RPS | p50 | p99 | p99.9 | errors | CPU s/1k req | peak RSS MB | RPS vs nginx | CPU vs nginx |');
    lines.push('|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|');
    for (const [t, s] of Object.entries(sc.targets)) {
      if (s.error) {
        lines.push(`| ${t} | failed: ${s.error.replace(/\|/g, '/')} | | | | | | | | |`);
        continue;
      }
      lines.push(`| ${t} | ${fmtInt(s.rps)} | ${fmtLat(s.p50Us)} | ${fmtLat(s.p99Us)} | ${fmtLat(s.p999Us)} | ${fmtErrors(s)} | ${fmtCpu(s.cpuPer1k)} | ${fmtMB(s.peakRssMB)} | ${fmtRatio(s.rpsVsNginx)} | ${fmtRatio(s.cpuVsNginx)} |`);
    }
    lines.push('');
  }
  return lines.join('\n');
}

// Hand-written SVG: one panel per scenario (each with its own y scale, since
// 1 MiB and 100 B responses differ by orders of magnitude), one bar per
// target, value on top, min–max whisker when there were repeats.
function chartSvg(report) {
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
  const scen = Object.entries(report.scenarios);
  const targets = [...new Set(scen.flatMap(([, sc]) => Object.keys(sc.targets)))];
  // Each panel shows only the targets that ran in its scenario (the cache targets run in one).
  const panelTargets = (sc) => targets.filter((t) => sc.targets[t]);
  const barW = 44, gap = 14, plotH = 240, padL = 58, padR = 80, panelTop = 40, panelBottom = 92;
  const widest = Math.max(1, ...scen.map(([, sc]) => panelTargets(sc).length));
  const panelW = Math.max(240, padL + padR + widest * (barW + gap));
  const perRow = Math.min(3, Math.max(1, scen.length));
  const rows = Math.ceil(scen.length / perRow) || 1;
  const headerH = 92;
  const panelH = panelTop + plotH + panelBottom;
  const m = report.meta;
  const subtitle = `${m.date.slice(0, 16).replace('T', ' ')} UTC · ${m.cpuModel} × ${m.cores} · Node ${m.node} · ${m.settings.duration}s runs, median of ${m.settings.repeats}, wrk -t ${m.settings.threads}`;
  const legendW = targets.reduce((w, t) => w + 34 + t.length * 7.5, 14);
  // wide enough for the header text and legend even with a single panel
  const width = Math.ceil(Math.max(perRow * panelW + 20, legendW + 14, 14 + subtitle.length * 6.8, 560));
  const height = headerH + rows * panelH + 10;
  const o = [];
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif">`);
  o.push(`<rect width="100%" height="100%" fill="#ffffff"/>`);
  o.push(`<text x="14" y="26" font-size="18" font-weight="bold" fill="#222">Requests per second by scenario (higher is better)</text>`);
  o.push(`<text x="14" y="46" font-size="12" fill="#555">${esc(subtitle)}</text>`);
  // legend
  let lx = 14;
  for (const t of targets) {
    o.push(`<rect x="${lx}" y="60" width="14" height="14" fill="${COLORS[t] ?? '#999'}"/>`);
    o.push(`<text x="${lx + 19}" y="72" font-size="13" fill="#222">${esc(t)}</text>`);
    lx += 34 + t.length * 7.5;
  }
  scen.forEach(([name, sc], i) => {
    const px = 10 + (i % perRow) * panelW;
    const py = headerH + Math.floor(i / perRow) * panelH;
    const shown = panelTargets(sc);
    const vals = shown.map((t) => sc.targets[t]);
    const maxV = Math.max(1, ...vals.map((s) => (s && !s.error ? Math.max(s.rps ?? 0, s.rpsMax ?? 0) : 0)));
    // "nice" tick step: 1, 2 or 5 times a power of ten, about 4 ticks
    const raw = maxV / 4;
    const pow = 10 ** Math.floor(Math.log10(raw));
    const step = [1, 2, 5, 10].map((k) => k * pow).find((s) => s >= raw);
    const top = Math.ceil(maxV / step) * step;
    const y = (v) => py + panelTop + plotH - (v / top) * plotH;
    o.push(`<text x="${px + padL}" y="${py + 22}" font-size="14" font-weight="bold" fill="#222">${esc(name)}</text>`);
    o.push(`<text x="${px + padL + 14 + name.length * 10}" y="${py + 22}" font-size="11" fill="#666">${esc(`${sc.short ?? sc.desc}, ${sc.connections} connections`)}</text>`);
    for (let v = 0; v <= top + 1e-9; v += step) {
      o.push(`<line x1="${px + padL}" x2="${px + panelW - padR}" y1="${y(v)}" y2="${y(v)}" stroke="${v === 0 ? '#888' : '#e3e3e3'}"/>`);
      o.push(`<text x="${px + padL - 6}" y="${y(v) + 4}" font-size="11" text-anchor="end" fill="#555">${fmtShort(v)}</text>`);
    }
    shown.forEach((t, j) => {
      const s = sc.targets[t];
      const bx = px + padL + gap / 2 + j * (barW + gap);
      const cx = bx + barW / 2;
      const base = y(0);
      if (s && !s.error && s.rps != null) {
        o.push(`<rect x="${bx}" y="${y(s.rps)}" width="${barW}" height="${base - y(s.rps)}" fill="${COLORS[t] ?? '#999'}"/>`);
        if (report.meta.settings.repeats > 1 && s.rpsMax > s.rpsMin) {
          o.push(`<line x1="${cx}" x2="${cx}" y1="${y(s.rpsMin)}" y2="${y(s.rpsMax)}" stroke="#333" stroke-width="1.2"/>`);
          o.push(`<line x1="${cx - 5}" x2="${cx + 5}" y1="${y(s.rpsMax)}" y2="${y(s.rpsMax)}" stroke="#333" stroke-width="1.2"/>`);
          o.push(`<line x1="${cx - 5}" x2="${cx + 5}" y1="${y(s.rpsMin)}" y2="${y(s.rpsMin)}" stroke="#333" stroke-width="1.2"/>`);
        }
        const labelY = Math.min(y(s.rps), report.meta.settings.repeats > 1 ? y(s.rpsMax) : y(s.rps)) - 5;
        o.push(`<text x="${cx}" y="${labelY}" font-size="11" text-anchor="middle" fill="#222">${fmtShort(s.rps)}</text>`);
      } else {
        o.push(`<text x="${cx}" y="${base - 6}" font-size="10" text-anchor="middle" fill="#b00">${s ? 'failed' : 'n/a'}</text>`);
      }
      o.push(`<text transform="translate(${cx + 4},${base + 12}) rotate(35)" font-size="11" fill="#333">${esc(t)}</text>`);
    });
  });
  o.push('</svg>');
  return o.join('\n') + '\n';
}

// ---------------------------------------------------------------- main

function machineInfo(tools, opts) {
  let cpuModel = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /model name\s*:\s*(.+)/.exec(fs.readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpuModel = m[1].trim();
  } catch { /* keep os.cpus() */ }
  return {
    date: new Date().toISOString(),
    node: process.version,
    cpuModel,
    cores: os.cpus().length,
    kernel: `${os.type()} ${os.release()}`,
    tools: {
      wrk: toolVersion(tools.wrk, ['-v']),
      nginx: toolVersion(tools.nginx, ['-v']),
      haproxy: toolVersion(tools.haproxy, ['-v']),
    },
    settings: {
      scenarios: opts.scenarios, targets: opts.targets, duration: opts.duration, warmup: opts.warmup,
      repeats: opts.repeats, threads: opts.threads, connections: opts.connections ?? null,
      upstreamThreads: opts.upstreamThreads, fdLimit,
    },
  };
}

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.render) {
    const report = JSON.parse(fs.readFileSync(path.join(opts.render, 'results.json'), 'utf8'));
    fs.writeFileSync(path.join(opts.render, 'results.md'), markdown(report) + '\n');
    fs.writeFileSync(path.join(opts.render, 'chart.svg'), chartSvg(report));
    log(`rebuilt ${opts.render}/results.md and chart.svg`);
    return;
  }
  const tools = ensureTools(opts);
  buildUpstream();

  fdLimit = measureFdLimit();
  const maxConns = Math.max(...opts.scenarios.map((s) => opts.connections ?? SCENARIOS[s].connections));
  if (2 * maxConns + 100 > fdLimit) {
    log(`warning: children get at most ${fdLimit} open files (raising the hard limit needs CAP_SYS_RESOURCE); ` +
      `a proxy holding ${maxConns} client connections needs about ${2 * maxConns + 100}. ` +
      `Expect errors at that scale (HAProxy maxconn is capped at ${haproxyMaxconn()}).`);
  }
  tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'native-bench-'));
  logDir = path.join(opts.out, 'logs');
  fs.mkdirSync(opts.out, { recursive: true });
  const meta = machineInfo(tools, opts);
  const report = { meta, skipped: {}, scenarios: {}, runs: [] };

  const upstream = await startUpstream(opts);
  log(`upstream listening on 127.0.0.1:${upstream.port} (pid ${upstream.rec.pid})`);

  const active = [];
  // Started side by side (a few seconds saved), reported in target order.
  const names = opts.targets.filter((name) => opts.scenarios.some((sc) => runsIn(sc, name))); // e.g. the cache targets need "cached"
  for (const t of await Promise.all(names.map((name) => startTarget(name, upstream, tools)))) {
    const name = t.name;
    if (t.skip) {
      log(`skipping ${name}: ${t.skip}`);
      report.skipped[name] = t.skip;
    } else {
      log(`${name} ready on 127.0.0.1:${t.port} (pid ${t.rec.pid})`);
      active.push(t);
    }
  }
  if (!active.length) fail('no target could be started');

  const total = opts.scenarios.reduce((n, sc) => n + active.filter((t) => runsIn(sc, t.name)).length, 0) * opts.repeats;
  const perRun = opts.duration + opts.warmup + 0.6;
  log(`${total} measured runs, about ${Math.ceil((total * perRun) / 60)} min`);
  let n = 0;
  const runsBy = {}; // scenario -> target -> [run]
  for (const scenario of opts.scenarios) {
    const here = active.filter((t) => runsIn(scenario, t.name));
    runsBy[scenario] = Object.fromEntries(here.map((t) => [t.name, []]));
    for (let rep = 0; rep < opts.repeats; rep++) {
      // Rotate the order every repeat so no target always runs first/last
      // (thermal state, leftover TIME_WAIT sockets, page cache).
      const order = here.map((_, i) => here[(i + rep) % here.length]);
      for (const target of order) {
        n++;
        const prefix = `[${n}/${total}] ${scenario} ${target.name} run ${rep + 1}/${opts.repeats}`;
        if (target.rec.exited || upstream.rec.exited) {
          log(`${prefix} skipped: ${target.rec.exited ? target.name : 'upstream'} is not running`);
          runsBy[scenario][target.name].push({ error: 'process not running' });
          continue;
        }
        process.stderr.write(`${prefix} ... `);
        const run = await measuredRun(tools, opts, scenario, target, upstream);
        if (cleaningUp) return; // interrupted: the signal handler is tearing down
        run.scenario = scenario;
        run.target = target.name;
        run.repeat = rep + 1;
        report.runs.push(run);
        runsBy[scenario][target.name].push(run);
        if (run.error) {
          log(`failed: ${run.error}`);
        } else {
          const errs = run.socketErrors + run.non2xx;
          log(`${fmtInt(run.rps)} rps, p99 ${fmtLat(run.latencyUs.p99)}, cpu ${fmtCpu(run.cpuPer1k)} s/1k` +
            (errs ? `, ${run.socketErrors} socket errors, ${run.non2xx} non-2xx` : ''));
        }
        // Let closed connections drain before the next target starts.
        await sleep(scenario === 'c10k' ? 1500 : 300);
      }
    }
    const sc = SCENARIOS[scenario];
    const targetsSummary = {};
    for (const t of here) targetsSummary[t.name] = summarize(runsBy[scenario][t.name]);
    addRatios(targetsSummary);
    report.scenarios[scenario] = {
      desc: sc.desc, short: sc.short, path: sc.path, connections: opts.connections ?? sc.connections, targets: targetsSummary,
    };
    if (scenario === 'c10k') {
      for (const [t, s] of Object.entries(targetsSummary)) {
        if (s.socketErrors || s.non2xx) log(`  warning: c10k ${t} had ${s.socketErrors} socket errors and ${s.non2xx} non-2xx`);
      }
    }
  }

  const md = markdown(report);
  fs.writeFileSync(path.join(opts.out, 'results.json'), JSON.stringify(report, null, 2) + '\n');
  fs.writeFileSync(path.join(opts.out, 'results.md'), md + '\n');
  fs.writeFileSync(path.join(opts.out, 'chart.svg'), chartSvg(report));
  await cleanup();
  process.stdout.write(opts.json ? JSON.stringify(report, null, 2) + '\n' : md + '\n');
  log(`wrote ${opts.out}/{results.json,results.md,chart.svg,logs/}`);
}

for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, async () => {
    log(`\n${sig}: stopping everything this run started ...`);
    await cleanup();
    process.exit(130);
  });
}

main().catch(async (e) => {
  log(`error: ${e.stack || e}`);
  await cleanup();
  process.exit(1);
});
