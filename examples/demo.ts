import { readFile } from 'node:fs/promises'
import type { FastifyInstance, FastifyReply } from 'fastify'

const PUBLIC = new URL('./public/', import.meta.url)
/** The client helper's modules, served from lib/ as the browser imports them (client.js imports the others). */
const CLIENT_MODULES = ['client', 'www-authenticate', 'client-dpop']

/**
 * The page has no inline script or style, so the strictest policy holds: everything from this
 * origin only. `form-action 'none'` also stops the login form from ever being submitted natively
 * (with the password in the URL) should the script fail to load.
 */
export const CONTENT_SECURITY_POLICY = "default-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/**
 * The browser demo, a plugin (its routes and headers stay encapsulated): `GET /` the page,
 * `/app.js` its script, `/style.css`, and `/client.js` with `/www-authenticate.js` and
 * `/client-dpop.js`, the client helper compiled from `lib/client.ts` and the modules it imports
 * at the first request and kept, so there is no build step. The page turns DPoP on when the
 * server's challenge offers it (the app's `DPOP`), so nothing here needs to know.
 */
export default async function demoPage (app: FastifyInstance): Promise<void> {
  const read = (name: string) => readFile(new URL(name, PUBLIC), 'utf8')
  const [html, script, style] = await Promise.all([read('index.html'), read('app.js'), read('style.css')])
  const compiled = new Map<string, Promise<string>>()

  app.addHook('onSend', async (_request, reply) => {
    reply.header('content-security-policy', CONTENT_SECURITY_POLICY)
    reply.header('x-content-type-options', 'nosniff')
    reply.header('referrer-policy', 'no-referrer')
    // A demo is edited while it runs: let the browser revalidate every time.
    reply.header('cache-control', 'no-cache')
  })

  const send = (type: string, body: string) => async (_request: unknown, reply: FastifyReply) => reply.type(type).send(body)
  app.get('/', send('text/html; charset=utf-8', html))
  app.get('/app.js', send('text/javascript; charset=utf-8', script))
  app.get('/style.css', send('text/css; charset=utf-8', style))
  for (const name of CLIENT_MODULES) {
    app.get(`/${name}.js`, async (_request, reply) => {
      // Compiled once; a failure is not kept, the next request tries again.
      let module = compiled.get(name)
      if (module === undefined) {
        module = compileModule(name).catch((error: unknown) => {
          compiled.delete(name)
          throw error
        })
        compiled.set(name, module)
      }
      return reply.type('text/javascript; charset=utf-8').send(await module)
    })
  }
}

/** lib/<name>.ts as a browser ES module. TypeScript is loaded only if a browser asks. */
async function compileModule (name: string): Promise<string> {
  const { default: ts } = await import('typescript')
  const source = await readFile(new URL(`../lib/${name}.ts`, import.meta.url), 'utf8')
  return ts.transpileModule(source, {
    fileName: `${name}.ts`,
    compilerOptions: { target: ts.ScriptTarget.ES2022, module: ts.ModuleKind.ESNext }
  }).outputText
}
