import { setTimeout as sleep } from 'node:timers/promises'
import t from 'tap'
import { CallDeadlines } from '../lib/call-deadlines.js'

/** Timers that keep the process open (unref'd ones are not counted). */
function refedTimers (): number {
  return process.getActiveResourcesInfo().filter((resource) => resource === 'Timeout').length
}

t.test('a call that settles in time settles as it did, with the deadline it was given', async (t) => {
  const deadlines = new CallDeadlines(1000)
  const before = Date.now()
  let given = 0
  const value = await deadlines.run(async (deadline) => {
    given = deadline
    return 'answer'
  })
  t.equal(value, 'answer')
  t.ok(given >= before + 1000 && given <= Date.now() + 1000, 'the deadline is now + the limit, on the wall clock')
  const cause = new Error('ECONNREFUSED')
  await t.rejects(deadlines.run(async () => { throw cause }), cause, 'a rejection is passed on as it is')
  await t.rejects(deadlines.run(() => { throw cause }), cause, 'so is a synchronous throw')
})

t.test('a call past its limit is failed, and its late answer ignored', async (t) => {
  const deadlines = new CallDeadlines(30)
  let settle: (value: string) => void = () => {}
  const hanging = deadlines.run(async () => await new Promise<string>((resolve) => { settle = resolve }))
  await t.rejects(hanging, { message: 'store call exceeded 30 ms' })
  settle('too late')
  t.equal(await deadlines.run(async () => 'next'), 'next', 'later calls are unaffected')
})

t.test('calls time out each at its own deadline, in the order they started', async (t) => {
  const deadlines = new CallDeadlines(60)
  const failedAt: Record<string, number> = {}
  const start = performance.now()
  const first = deadlines.run(async () => await new Promise(() => {})).catch(() => { failedAt.first = performance.now() - start })
  await sleep(30)
  const second = deadlines.run(async () => await new Promise(() => {})).catch(() => { failedAt.second = performance.now() - start })
  // A call that answers meanwhile does not move anyone's deadline.
  t.equal(await deadlines.run(async () => 'quick'), 'quick')
  await first
  t.notOk('second' in failedAt, 'the later call is still running when the first times out')
  await second
  t.ok(failedAt.first! >= 59, `first failed after its 60 ms (${failedAt.first!.toFixed(0)} ms)`)
  t.ok(failedAt.second! >= 89, `second failed 60 ms after it started (${failedAt.second!.toFixed(0)} ms)`)
})

t.test('the timer holds the process open only while a call is in flight', async (t) => {
  const deadlines = new CallDeadlines(10_000)
  const idle = refedTimers()
  let settle: () => void = () => {}
  const running = deadlines.run(async () => await new Promise<void>((resolve) => { settle = resolve }))
  t.equal(refedTimers(), idle + 1, 'in flight: one timer')
  settle()
  await running
  t.equal(refedTimers(), idle, 'idle: the timer no longer counts')
  const again = deadlines.run(async () => await new Promise<void>((resolve) => { settle = resolve }))
  t.equal(refedTimers(), idle + 1, 'in flight again: the same timer counts again')
  settle()
  await again
  t.equal(refedTimers(), idle)
})
