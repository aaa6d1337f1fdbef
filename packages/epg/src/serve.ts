// `epg serve DIR`: serves the browser demo (packages/web/dist), onnxruntime-web's
// files (/ort/) and an exported model folder (/model/) from this machine. Only
// files inside those three folders are served; the cross-origin isolation
// headers let onnxruntime-web use WebAssembly threads.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const WEB = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'web');

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.mjs': 'text/javascript; charset=utf-8',
  '.json': 'application/json; charset=utf-8',
  '.wasm': 'application/wasm',
  '.onnx': 'application/octet-stream',
  '.data': 'application/octet-stream',
  '.md': 'text/markdown; charset=utf-8',
  '.map': 'application/json; charset=utf-8',
};

export interface ServeOptions {
  dir: string;
  port?: number;
  host?: string;
}

/** Starts the server; resolves once it listens (port 0 picks a free one). */
export async function serve(o: ServeOptions): Promise<{ server: Server; url: string }> {
  const modelDir = resolve(o.dir);
  if (!existsSync(join(modelDir, 'config.json')))
    throw new Error(`serve: ${o.dir} is not an exported model folder (no config.json); create one with epg export`);
  const app = join(WEB, 'dist');
  const ortDir = join(WEB, 'node_modules', 'onnxruntime-web', 'dist');
  if (!existsSync(join(app, 'app.js')) || !existsSync(ortDir))
    throw new Error(
      'serve: the browser demo is not installed; run `npm run setup:web` at the repository root ' +
        '(installs onnxruntime-web and esbuild into packages/web and builds the page)',
    );
  const roots: [string, string][] = [
    ['/model/', modelDir],
    ['/ort/', ortDir],
    ['/', app],
  ];
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    const [prefix, root] = roots.find(([p]) => path.startsWith(p))!;
    const rel = path.slice(prefix.length) || 'index.html';
    const file = resolve(root, rel);
    const headers = {
      'Cross-Origin-Opener-Policy': 'same-origin',
      'Cross-Origin-Embedder-Policy': 'require-corp',
      'Cache-Control': 'no-cache',
    };
    if ((req.method !== 'GET' && req.method !== 'HEAD') || !(file === root || file.startsWith(root + sep))) {
      res.writeHead(req.method === 'GET' || req.method === 'HEAD' ? 403 : 405, headers).end();
      return;
    }
    if (!existsSync(file) || !statSync(file).isFile()) {
      res.writeHead(404, { ...headers, 'Content-Type': 'text/plain' }).end(`not found: ${path}\n`);
      return;
    }
    res.writeHead(200, {
      ...headers,
      'Content-Type': TYPES[extname(file)] ?? 'application/octet-stream',
      'Content-Length': statSync(file).size,
    });
    if (req.method === 'HEAD') res.end();
    else createReadStream(file).pipe(res);
  });
  const host = o.host ?? '127.0.0.1';
  await new Promise<void>((ok, fail) => {
    server.once('error', fail);
    server.listen(o.port ?? 8080, host, ok);
  });
  const address = server.address();
  const port = typeof address === 'object' && address ? address.port : (o.port ?? 8080);
  return { server, url: `http://${host}:${port}/` };
}

export const SERVE_USAGE = `usage: epg serve DIR [--port P] [--host H]
  Serves the browser demo and the exported model folder DIR (from epg export) at http://127.0.0.1:P/
  (default port 8080; --port 0 picks a free one). Needs packages/web: npm run setup:web.`;

/** `epg serve ...`: runs until interrupted; 2 on a usage error. */
export async function serveCommand(argv: string[]): Promise<number> {
  let values: { port?: string; host?: string; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { port: { type: 'string' }, host: { type: 'string' }, help: { type: 'boolean' } },
    }));
  } catch (e) {
    console.error(`epg: ${(e as Error).message}\n\n${SERVE_USAGE}`);
    return 2;
  }
  if (values.help) {
    console.log(SERVE_USAGE);
    return 0;
  }
  const port = values.port === undefined ? 8080 : Number(values.port);
  if (positionals.length !== 1 || !(Number.isInteger(port) && port >= 0 && port < 65536)) {
    console.error(`epg: serve needs one DIR and a port in 0…65535\n\n${SERVE_USAGE}`);
    return 2;
  }
  const { server, url } = await serve({ dir: positionals[0]!, port, ...(values.host ? { host: values.host } : {}) });
  console.log(`serving ${positionals[0]} at ${url} (Ctrl-C stops)`);
  await new Promise<void>((done) => {
    const stop = (): void => {
      server.close(() => done());
      server.closeAllConnections();
    };
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  return 0;
}
