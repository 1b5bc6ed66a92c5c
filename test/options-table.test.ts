import { readFileSync } from 'node:fs'
import t from 'tap'
import { resolveOptions, type TokenAuthOptions } from '../lib/options.js'
import { optionSpecs } from '../lib/options/spec.js'
import { documentedOptions, END, README, renderOptionsTable, START } from '../scripts/options-table.js'
import { baseOptions } from './helpers.js'

// Each option is defined once (lib/options/spec.ts); these checks keep everything written
// elsewhere (the README table, the editor's `@default`, the unit rule) from drifting from it.

const options = documentedOptions()

t.test('the README options table is the one the spec renders (npm run docs:options rewrites it)', async (t) => {
  const readme = readFileSync(README, 'utf8')
  const table = readme.slice(readme.indexOf(START) + START.length, readme.indexOf(END)).trim()
  t.ok(readme.includes(START) && readme.includes(END), 'the README has both markers')
  t.equal(table, renderOptionsTable(), 'run `npm run docs:options` after changing an option')
  for (const name of Object.keys(optionSpecs)) t.match(table, `| \`${name}\` |`, `${name} has a row`)
})

t.test('every @default tag says what the spec does', async (t) => {
  t.ok(options.length > Object.keys(optionSpecs).length, 'nested options are documented too')
  for (const option of options) {
    if (option.defaultTag !== undefined) {
      t.equal(option.defaultTag, option.spec.default, `${option.name}: @default`)
    } else {
      // Without a tag the option must be required, unset by default, an object whose fields carry
      // the defaults, or a field whose parent's tag gives it (`loginRateLimit`'s `max`).
      const parent = options.find((candidate) => candidate.name === option.name.slice(0, option.name.lastIndexOf('.')))
      t.ok(/^(none|unset)/.test(option.spec.default) || option.spec.fields !== undefined || parent?.defaultTag !== undefined, `${option.name}: needs a @default tag`)
    }
    t.not(option.description, '', `${option.name}: documented`)
  }
})

t.test('durations follow the unit rule: seconds for lifetimes, milliseconds for timeouts and intervals', async (t) => {
  const durations = options.filter((option) => option.spec.unit !== undefined)
  t.ok(durations.length >= 10, 'the durations are marked with their unit')
  for (const option of options) {
    const processTimer = /(Timeout|Interval|timeWindow)$/.test(option.name)
    t.equal(option.spec.unit === 'milliseconds', processTimer, `${option.name}: milliseconds only for a timeout or an interval`)
    if (option.spec.unit !== undefined) t.match(option.description.toLowerCase(), option.spec.unit, `${option.name}: its description names the unit`)
  }
})

t.test('the unknown-option check knows exactly the spec\'s options', async (t) => {
  for (const name of Object.keys(optionSpecs)) {
    t.doesNotThrow(() => resolveOptions({ ...baseOptions(), [name]: (baseOptions() as unknown as Record<string, unknown>)[name] }), `${name} is known`)
  }
  t.throws(() => resolveOptions({ ...baseOptions(), refreshTokenTTL: 1 } as unknown as TokenAuthOptions), { code: 'FST_TOKEN_AUTH_INVALID_OPTION', message: /^Invalid option "refreshTokenTTL"/ })
})
