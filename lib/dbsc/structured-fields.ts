/*
 * The two shapes of RFC 9651 (Structured Field Values) that DBSC's headers use here: a String
 * item, whose parameters are ignored (W3C DBSC: `Sec-Secure-Session-Id` and
 * `Secure-Session-Response` are sf-strings, "any parameters SHOULD be ignored"), and the
 * serialisation of a String. Nothing else of RFC 9651 is needed: the headers we send are built
 * from strings we minted, of the base64url alphabet, digits, `.` and `/`.
 */

/** RFC 9651 §3.3.3: a String holds printable ASCII only. */
const STRING_CHARACTER = /^[\x20-\x7e]$/

/**
 * The String of an sf-string item (RFC 9651 §4.2.3: optional leading and trailing spaces, the
 * quoted string with `\"` and `\\` escapes, then parameters, ignored); null for anything else,
 * a list of items included.
 */
export function parseStringItem (field: string): string | null {
  // Spaces trimmed by scanning: a pattern anchored at the end would retry every inner run of
  // spaces, quadratic in a header of the client's.
  let start = 0
  let end = field.length
  while (field[start] === ' ') start++
  while (end > start && field[end - 1] === ' ') end--
  const text = field.slice(start, end)
  if (!text.startsWith('"')) return null
  let value = ''
  for (let index = 1; index < text.length; index++) {
    const character = text[index] as string
    if (character === '\\') {
      const escaped = text[++index]
      if (escaped !== '"' && escaped !== '\\') return null
      value += escaped
    } else if (character === '"') {
      const rest = text.slice(index + 1)
      return rest === '' || validParameters(rest) ? value : null
    } else if (STRING_CHARACTER.test(character)) {
      value += character
    } else {
      return null
    }
  }
  return null
}

/** RFC 9651 §4.1.6: a String, quoted, with `"` and `\` escaped. The caller passes printable ASCII. */
export function serializeString (value: string): string {
  return `"${value.replace(/[\\"]/g, (character) => `\\${character}`)}"`
}

/**
 * Parameters after an item: `;key` or `;key=value`, repeated, nothing after them (a comma would
 * start a second list member: not an item). Their values are not interpreted, only delimited,
 * so a quoted value may hold `;` and `,`.
 */
function validParameters (text: string): boolean {
  return /^(?:; *[a-z*][a-z0-9_.*-]*(?:=(?:"(?:[^"\\]|\\["\\])*"|[^;," ]+))?)+$/.test(text)
}
