// `npm run docs:options`: writes the README's options table from the options' single
// definition: names, defaults and units from lib/options/spec.ts, types and descriptions from
// the interfaces of lib/options/types.ts (what an editor shows). test/options-table.test.ts
// fails when the README's table is not what this prints.
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import type { OptionSpec } from '../lib/options/checks.js'
import { optionSpecs } from '../lib/options/spec.js'

export const README = fileURLToPath(new URL('../README.md', import.meta.url))
const TYPES = fileURLToPath(new URL('../lib/options/types.ts', import.meta.url))
export const START = '<!-- options:start -->'
export const END = '<!-- options:end -->'

/** One documented option: its dotted name, its spec and what the interfaces say of it. */
export interface DocumentedOption {
  name: string
  spec: OptionSpec<unknown>
  type: string
  /** The JSDoc text, tags left out. */
  description: string
  /** The JSDoc `@default` tag, if any. */
  defaultTag: string | undefined
}

/** Every option and nested option, in the spec's order, with its JSDoc read by the compiler. */
export function documentedOptions (): DocumentedOption[] {
  const program = ts.createProgram([TYPES], { strict: true, module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, skipLibCheck: true })
  const checker = program.getTypeChecker()
  const source = program.getSourceFile(TYPES) as ts.SourceFile
  const root = source.statements.find((node): node is ts.InterfaceDeclaration => ts.isInterfaceDeclaration(node) && node.name.text === 'TokenAuthOptions')
  if (root === undefined) throw new Error('TokenAuthOptions not found in lib/options/types.ts')
  const describe = (name: string, spec: OptionSpec<unknown>, owner: ts.Type): DocumentedOption[] => {
    const path = name.split('.')
    let symbol: ts.Symbol | undefined
    let type = owner
    for (const part of path) {
      // Through `false | X` and `boolean | X` to the object type X that has the property.
      const candidates = type.isUnion() ? type.types : [type]
      symbol = candidates.map((candidate) => checker.getPropertyOfType(candidate, part)).find((found) => found !== undefined)
      if (symbol === undefined) throw new Error(`option ${name} has no declaration in lib/options/types.ts`)
      type = checker.getNonNullableType(checker.getTypeOfSymbol(symbol))
    }
    const declaration = (symbol as ts.Symbol).valueDeclaration as ts.PropertySignature
    const tag = (symbol as ts.Symbol).getJsDocTags(checker).find((found) => found.name === 'default')
    const option = {
      name,
      spec,
      type: declaration.type?.getText() ?? 'unknown',
      description: ts.displayPartsToString((symbol as ts.Symbol).getDocumentationComment(checker)).replace(/\s+/g, ' ').trim(),
      defaultTag: tag === undefined ? undefined : ts.displayPartsToString(tag.text).trim()
    }
    const nested = Object.entries(spec.fields ?? {}).flatMap(([field, fieldSpec]) => describe(`${name}.${field}`, fieldSpec, owner))
    return [option, ...nested]
  }
  const options = checker.getTypeAtLocation(root)
  return Object.entries(optionSpecs as Record<string, OptionSpec<unknown>>).flatMap(([name, spec]) => describe(name, spec, options))
}

/** The first sentence: the table stays a summary; the editor and the interfaces hold the rest. */
function summary (text: string): string {
  const end = text.search(/\.(\s|$)/)
  return (end === -1 ? text : text.slice(0, end + 1)).replace(/\|/g, '\\|')
}

export function renderOptionsTable (): string {
  const rows = documentedOptions().map((option) => {
    const unit = option.spec.unit === undefined ? '' : ` (${option.spec.unit === 'seconds' ? 's' : 'ms'})`
    const type = `\`${option.type.replace(/\s+/g, ' ').replace(/\|/g, '\\|')}\``
    const fallback = /^([[{'].*|\d+|true|false)$/.test(option.spec.default) ? `\`${option.spec.default}\`` : option.spec.default
    return `| \`${option.name}\` | ${type}${unit} | ${fallback} | ${summary(option.description)} |`
  })
  return ['| Option | Type | Default | What it does |', '| --- | --- | --- | --- |', ...rows].join('\n')
}

/** The README with the table between its markers replaced by `table`. */
export function withTable (readme: string, table: string): string {
  const start = readme.indexOf(START)
  const end = readme.indexOf(END)
  if (start === -1 || end < start) throw new Error(`README.md needs the markers ${START} and ${END} in its Options section`)
  return `${readme.slice(0, start + START.length)}\n${table}\n${readme.slice(end)}`
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(README, withTable(readFileSync(README, 'utf8'), renderOptionsTable()))
  process.stdout.write('README.md: options table written\n')
}
