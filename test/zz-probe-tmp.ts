import fc from 'fast-check'
import { parseItem } from 'structured-headers'
import { parseStringItem, serializeString } from '../lib/dbsc/structured-fields.js'
const theirs = (s: string): string | null => { try { const [v] = parseItem(s); return typeof v === 'string' ? v : null } catch { return null } }
const alphabet = fc.constantFrom('"', '\\', ';', ',', '=', ' ', '\t', 'a', 'b', 'z', '*', '1', '.', '-', ':', '?', '(', ')', 'é', 'Q')
fc.assert(fc.property(fc.array(alphabet, { maxLength: 24 }).map((c) => c.join('')), (field) => {
  const ours = parseStringItem(field); const their = theirs(field)
  if (their !== null && ours !== their) return false
  if (ours !== null && !field.replace(/^ +/, '').startsWith(serializeString(ours))) return false
  return ours === null || theirs(serializeString(ours)) === ours
}), { numRuns: 2_000_000 })
console.log('ok')
