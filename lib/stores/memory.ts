// The memory store lives in ./memory/ (the store, its slab, its index and its packing); this
// path stays the one the rest of the package imports.
export { MemoryStore, type MemoryStoreOptions } from './memory/index.js'
