package nftables

import "slices"

// slotRange is a run of keys in the endpoints map: first, first+1, ….
type slotRange struct{ first, n int }

// slots hands out runs of keys: first fit in the gaps between those taken,
// then after the last.
type slots struct {
	gaps []slotRange
	end  int
}

func newSlots(taken []slotRange) *slots {
	slices.SortFunc(taken, func(a, b slotRange) int { return a.first - b.first })
	s := &slots{}
	for _, t := range taken {
		if t.first > s.end {
			s.gaps = append(s.gaps, slotRange{s.end, t.first - s.end})
		}
		s.end = max(s.end, t.first+t.n)
	}
	return s
}

func (s *slots) take(n int) slotRange {
	for i, g := range s.gaps {
		if g.n >= n {
			s.gaps[i] = slotRange{g.first + n, g.n - n}
			return slotRange{g.first, n}
		}
	}
	s.end += n
	return slotRange{s.end - n, n}
}

// keyAlloc hands a port its runs of keys in its group's map: the runs
// it had, in order, where the length still fits, else free ones.
type keyAlloc struct {
	group string
	free  *slots
	had   []slotRange
	next  int
}

func (a *keyAlloc) take(n int) slotRange {
	if a.next < len(a.had) && a.had[a.next].n == n {
		a.next++
		return a.had[a.next-1]
	}
	a.next = len(a.had)
	return a.free.take(n)
}
