package loader

// idAlloc hands out ids in [lo, hi) round-robin, so a released id is
// reused as late as possible (stale references to it age out first).
type idAlloc struct {
	lo, hi, next uint32
	used         map[uint32]bool
}

func newIDAlloc(lo, hi uint32) *idAlloc {
	return &idAlloc{lo: lo, hi: hi, next: lo, used: make(map[uint32]bool)}
}

func (a *idAlloc) alloc() (uint32, bool) {
	if uint32(len(a.used)) >= a.hi-a.lo {
		return 0, false
	}
	for {
		id := a.next
		a.next++
		if a.next >= a.hi {
			a.next = a.lo
		}
		if !a.used[id] {
			a.used[id] = true
			return id, true
		}
	}
}

func (a *idAlloc) take(id uint32) {
	a.used[id] = true
	if id >= a.next {
		a.next = id + 1
		if a.next >= a.hi {
			a.next = a.lo
		}
	}
}

func (a *idAlloc) release(id uint32) { delete(a.used, id) }
