// `epg serve DIR`: serves the browser demo (packages/web/dist), onnxruntime-web's
// files (/ort/) and an exported model folder (/model/) from this machine. Only
// files inside those three folders are served; the cross-origin isolation
// headers let onnxruntime-web use WebAssembly threads.
import { createReadStream, existsSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { dirname, extname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

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
