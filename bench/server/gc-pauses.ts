import { constants, PerformanceObserver } from 'node:perf_hooks'

/** Time in GC pauses so far and how many were mark-compacts, as a benchmark server reports them. */
export interface GcPauses { ms: number, major: number }

/** Starts counting this process's GC pauses from now; the object returned keeps the running totals. */
export function countGcPauses (): GcPauses {
  const gc: GcPauses = { ms: 0, major: 0 }
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      gc.ms += entry.duration
      if ((entry as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++
    }
  }).observe({ entryTypes: ['gc'] })
  return gc
}
