import { InvalidOptionError } from '../errors.js'
import type { TokenAuthOptions } from './types.js'

/**
 * One option, stated once: its documented default, its unit where it is a duration, and how the
 * app's value is validated and defaulted. ./spec.ts builds every option from the kinds below;
 * the README table and the `@default` tags are checked against it (test/options-table.test.ts).
 */
export interface OptionSpec<Result> {
  /** The default as the README and the `@default` tag write it. */
  readonly default: string
  /** Where the option is a duration: the unit rule of ./types.ts, stated per option. */
  readonly unit?: 'seconds' | 'milliseconds'
  /** The nested options of an object option, for the README table. */
  readonly fields?: Readonly<Record<string, OptionSpec<unknown>>>
  /** Validates what the app passed (`undefined` when it left the option out) and fills the default. */
  resolve (value: unknown, name: string, options: TokenAuthOptions): Result
}

/** A browser caps cookie lifetimes at 400 days (RFC 6265bis); so do we. */
export const MAX_LIFETIME = 400 * 24 * 60 * 60

/** The default written the way an app would write it. */
export function show (value: unknown): string {
  if (typeof value === 'string') return `'${value}'`
  if (Array.isArray(value)) return `[${value.map(show).join(', ')}]`
  if (typeof value === 'object' && value !== null) {
    return `{ ${Object.entries(value).map(([key, field]) => `${key}: ${show(field)}`).join(', ')} }`
  }
  return String(value)
}

/** The value as an error message names it, never a secret (secrets are checked in ../keys.ts). */
export function describe (value: unknown): string {
  if (typeof value === 'string') return `"${value}"`
  if (typeof value === 'function') return 'a function'
  if (Buffer.isBuffer(value)) return 'a Buffer'
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

/** A lifetime in whole seconds, 1 s to 400 days. */
export function lifetime (fallback: number): OptionSpec<number> {
  return {
    default: show(fallback),
    unit: 'seconds',
    resolve (value, name) {
      const result = value ?? fallback
      if (!Number.isSafeInteger(result) || (result as number) <= 0 || (result as number) > MAX_LIFETIME) {
        throw new InvalidOptionError(name, `must be a whole number of seconds between 1 and ${MAX_LIFETIME}, got ${describe(value)}`)
      }
      return result as number
    }
  }
}

/** A whole number within bounds; `unit` where it is a duration. */
export function integer (fallback: number, { min, max = Number.MAX_SAFE_INTEGER, unit }: { min: number, max?: number, unit?: OptionSpec<number>['unit'] }): OptionSpec<number> {
  return {
    default: show(fallback),
    ...(unit === undefined ? {} : { unit }),
    resolve (value, name) {
      const result = value ?? fallback
      if (!Number.isSafeInteger(result) || (result as number) < min || (result as number) > max) {
        throw new InvalidOptionError(name, `must be an integer between ${min} and ${max}, got ${describe(value)}`)
      }
      return result as number
    }
  }
}

/** One of a few strings. */
export function oneOf<const T extends readonly string[]> (allowed: T, fallback: T[number]): OptionSpec<T[number]> {
  return {
    default: show(fallback),
    resolve (value, name) {
      const result = value ?? fallback
      if (!allowed.includes(result as string)) {
        throw new InvalidOptionError(name, `must be one of ${allowed.map((v) => `'${v}'`).join(', ')}, got ${describe(value)}`)
      }
      return result as T[number]
    }
  }
}

/** A non-empty string, unset by default. */
export function optionalString (): OptionSpec<string | undefined> {
  return {
    default: 'unset',
    resolve (value, name) {
      if (value !== undefined && (typeof value !== 'string' || value === '')) {
        throw new InvalidOptionError(name, `must be a non-empty string, got ${describe(value)}`)
      }
      return value
    }
  }
}

/** A boolean. */
export function boolean (fallback: boolean): OptionSpec<boolean> {
  return {
    default: show(fallback),
    resolve (value, name) {
      const result = value ?? fallback
      if (typeof result !== 'boolean') throw new InvalidOptionError(name, `must be a boolean, got ${describe(value)}`)
      return result
    }
  }
}

/** A URL path starting with "/", without a trailing slash; `allowEmpty` for a prefix. */
export function path (fallback: string, allowEmpty = false): OptionSpec<string> {
  return {
    default: show(fallback),
    resolve: (value, name) => checkPath(value ?? fallback, name, allowEmpty)
  }
}

export function checkPath (value: unknown, name: string, allowEmpty = false): string {
  if (typeof value !== 'string' || (value === '' && !allowEmpty) || (value !== '' && !/^\/[\w\-./]*$/.test(value))) {
    throw new InvalidOptionError(name, `must be a path starting with "/", got ${describe(value)}`)
  }
  return value.endsWith('/') && value.length > 1 ? value.slice(0, -1) : value
}

/** An object option: `undefined` or an object, anything else is refused. */
export function objectOrUndefined<T extends object> (value: unknown, name: string, expected: string): Partial<T> {
  if (value === undefined) return {}
  if (value === null || typeof value !== 'object') throw new InvalidOptionError(name, `must be ${expected}, got ${describe(value)}`)
  return value as Partial<T>
}

export type Resolved<Specs extends Readonly<Record<string, OptionSpec<unknown>>>> = { [K in keyof Specs]: ReturnType<Specs[K]['resolve']> }

/** Resolves each field of an object option, named `parent.field` in errors, in declaration order. */
export function resolveFields<Fields extends Readonly<Record<string, OptionSpec<unknown>>>> (
  fields: Fields, given: Partial<Record<keyof Fields, unknown>>, parent: string, options: TokenAuthOptions
): Resolved<Fields> {
  return Object.fromEntries(Object.entries(fields).map(([key, field]) => [key, field.resolve(given[key], `${parent}.${key}`, options)])) as Resolved<Fields>
}
