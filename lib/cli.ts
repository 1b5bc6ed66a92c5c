import { ACCESS_TOKEN_ALGORITHMS, type AccessTokenAlgorithm, generateAccessKey, generateSecret } from './keys.js'

const USAGE = `Usage: fastify-token-auth keygen [--alg ${ACCESS_TOKEN_ALGORITHMS.join('|')}]

Prints environment lines with fresh keys for the access and refresh tokens:
  ACCESS_TOKEN_ALG, then ACCESS_TOKEN_SECRET (HS256) or ACCESS_TOKEN_PRIVATE_KEY (PEM, newlines as \\n),
  then REFRESH_TOKEN_SECRET. Keep the output secret; put it in your secret store or .env file.`

/** The `fastify-token-auth` command (see bin.ts); returns the exit code. */
export function run (args: readonly string[], out: (line: string) => void, err: (line: string) => void): number {
  if (args.includes('--help') || args.includes('-h')) {
    out(USAGE)
    return 0
  }
  const [command, ...rest] = args
  if (command !== 'keygen') {
    err(command === undefined ? USAGE : `Unknown command "${command}".\n${USAGE}`)
    return 1
  }
  let algorithm: AccessTokenAlgorithm = 'HS256'
  for (let i = 0; i < rest.length; i++) {
    const arg = rest[i] as string
    const value = arg === '--alg' ? rest[++i] : arg.startsWith('--alg=') ? arg.slice('--alg='.length) : undefined
    if (value === undefined || !(ACCESS_TOKEN_ALGORITHMS as readonly string[]).includes(value)) {
      err(arg === '--alg' || arg.startsWith('--alg=')
        ? `Unknown algorithm "${value ?? ''}": use one of ${ACCESS_TOKEN_ALGORITHMS.join(', ')}.`
        : `Unknown argument "${arg}".\n${USAGE}`)
      return 1
    }
    algorithm = value as AccessTokenAlgorithm
  }
  out(`ACCESS_TOKEN_ALG=${algorithm}`)
  const key = generateAccessKey(algorithm)
  out(algorithm === 'HS256' ? `ACCESS_TOKEN_SECRET=${key}` : `ACCESS_TOKEN_PRIVATE_KEY="${key.replaceAll('\n', '\\n')}"`)
  out(`REFRESH_TOKEN_SECRET=${generateSecret()}`)
  return 0
}
