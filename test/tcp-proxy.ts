import net from 'node:net'

/**
 * A TCP proxy a test controls, standing between the plugin's store client and a real Redis or
 * PostgreSQL: `forward` (normal), `refuse` (the server is down: every connection is cut), or
 * `blackhole` (the server hangs: connections are accepted and never answered).
 */
export class TcpProxy {
  readonly #server: net.Server
  readonly #sockets = new Set<net.Socket>()
  #mode: 'forward' | 'refuse' | 'blackhole' | 'mute' = 'forward'

  private constructor (server: net.Server) {
    this.#server = server
  }

  static async start (targetPort: number, targetHost = '127.0.0.1'): Promise<TcpProxy> {
    const server = net.createServer()
    const proxy = new TcpProxy(server)
    server.on('connection', (client) => { proxy.#accept(client, targetPort, targetHost) })
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
    return proxy
  }

  get port (): number {
    return (this.#server.address() as net.AddressInfo).port
  }

  get url (): string {
    return `127.0.0.1:${this.port}`
  }

  /** Cut every connection and every new one, as a stopped server would. */
  refuse (): void {
    this.#mode = 'refuse'
    this.#dropAll()
  }

  /** Accept connections but never answer, as a hung server would. */
  blackhole (): void {
    this.#mode = 'blackhole'
    this.#dropAll()
  }

  /**
   * Keep forwarding what clients send but drop every answer, on open connections too: the
   * server carries out commands whose replies are lost (a write that happened, seen as a timeout).
   */
  mute (): void {
    this.#mode = 'mute'
  }

  /** Back to normal; clients reconnect through the proxy. */
  forward (): void {
    this.#mode = 'forward'
    this.#dropAll()
  }

  async close (): Promise<void> {
    this.#dropAll()
    await new Promise<void>((resolve) => this.#server.close(() => resolve()))
  }

  #accept (client: net.Socket, targetPort: number, targetHost: string): void {
    this.#track(client)
    client.on('error', () => {})
    if (this.#mode === 'refuse') {
      client.destroy()
      return
    }
    if (this.#mode === 'blackhole') {
      client.resume() // read and drop whatever the client says
      return
    }
    const upstream = net.connect(targetPort, targetHost)
    this.#track(upstream)
    upstream.on('error', () => client.destroy())
    client.on('close', () => upstream.destroy())
    upstream.on('close', () => client.destroy())
    client.pipe(upstream)
    upstream.on('data', (chunk: Buffer) => { if (this.#mode !== 'mute') client.write(chunk) })
  }

  #track (socket: net.Socket): void {
    this.#sockets.add(socket)
    socket.on('close', () => this.#sockets.delete(socket))
  }

  #dropAll (): void {
    for (const socket of this.#sockets) socket.destroy()
    this.#sockets.clear()
  }
}
