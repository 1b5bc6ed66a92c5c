#!/usr/bin/env node
// The `fastify-token-auth` executable (package.json "bin"); the commands live in cli.ts.
import { run } from './cli.js'

process.exitCode = run(process.argv.slice(2), (line) => console.log(line), (line) => console.error(line))
