import { buildApp, configFromEnv } from './app.js'
import { serve } from './serve.js'

// `npm run example`: the demo server on the memory store, configured from the environment.
await serve(await buildApp(configFromEnv()), 3000)
