package demo

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlb-lb/xlb/test/lab"
)

// Long-lived connections: kept-alive HTTP connections through the VIP, each
// sending a request every streamEvery. Every answer names its backend, so
// a connection that another node carries on shows it is still talking to
// the same one.
const (
	streamEvery = 200 * time.Millisecond
	// streamWait bounds one request: a connection whose node is lost
	// waits for the router to drop the node, then for TCP's next
	// retransmission.
	streamWait = 15 * time.Second
)

// streamSet is a group of long-lived connections.
type streamSet struct {
	list     []*liveStream
	stopCh   chan struct{}
	stopping atomic.Bool
	wg       sync.WaitGroup
	once     sync.Once
}

// liveStream is one long-lived connection.
type liveStream struct {
	conn   *lab.HTTPConn
	client netip.AddrPort
	first  string // the backend of the first answer

	mu      sync.Mutex
	last    string
	answers int
	lastAt  time.Time
	pause   time.Duration // the longest time between two answers
	resumed time.Time     // the answer that ended it
	err     error
}

// openStreams opens n long-lived connections from distinct sources. The
// set is registered at once, so the tear-down stops it whatever happens.
func (d *haRun) openStreams(ctx context.Context, n int) (*streamSet, error) {
	set := &streamSet{stopCh: make(chan struct{})}
	d.streamsMu.Lock()
	d.streams = append(d.streams, set)
	d.streamsMu.Unlock()
	for range n {
		if err := ctx.Err(); err != nil {
			return set, err
		}
		src := d.nextSrc()
		c, err := d.topo.Client.DialHTTP(src, d.vip, requestTimeout)
		if err != nil {
			return set, fmt.Errorf("open a long-lived connection from %s: %w", src, err)
		}
		r, err := c.Get("/", requestTimeout)
		if err != nil {
			_ = c.Close() // failing anyway; the error below says why
			return set, fmt.Errorf("first request on the long-lived connection from %s: %w", src, err)
		}
		if r.Client != src {
			_ = c.Close() // failing anyway; the error below says why
			return set, fmt.Errorf("the backend saw the connection from %s as from %s", src, r.Client)
		}
		s := &liveStream{conn: c, client: src, first: r.Server, last: r.Server, answers: 1, lastAt: time.Now()}
		set.list = append(set.list, s)
		set.wg.Go(func() { set.run(s) })
	}
	return set, nil
}

func (set *streamSet) run(s *liveStream) {
	for {
		select {
		case <-set.stopCh:
			return
		case <-time.After(streamEvery):
		}
		r, err := s.conn.Get("/", streamWait)
		if set.stopping.Load() {
			return // the tear-down closed it
		}
		now := time.Now()
		s.mu.Lock()
		if err != nil {
			s.err = err
			s.mu.Unlock()
			return
		}
		if gap := now.Sub(s.lastAt); gap > s.pause {
			s.pause, s.resumed = gap, now
		}
		s.last, s.lastAt = r.Server, now
		s.answers++
		s.mu.Unlock()
	}
}

// stop ends every connection of the set (with a reset) and waits for
// them. It is idempotent.
func (set *streamSet) stop() {
	set.once.Do(func() {
		set.stopping.Store(true)
		close(set.stopCh)
		for _, s := range set.list {
			_ = s.conn.Close() // a reset; close(2) frees it whatever it returns
		}
		set.wg.Wait()
	})
}

// streamState is a snapshot of a liveStream.
type streamState struct {
	last    string
	answers int
	lastAt  time.Time
	pause   time.Duration
	resumed time.Time
	err     error
}

func (s *liveStream) state() streamState {
	s.mu.Lock()
	defer s.mu.Unlock()
	return streamState{last: s.last, answers: s.answers, lastAt: s.lastAt, pause: s.pause, resumed: s.resumed, err: s.err}
}

// broken: the connection failed, or another backend answered on it.
func (st streamState) broken(first string) bool { return st.err != nil || st.last != first }

// counts returns how many connections still answer and how many broke.
func (set *streamSet) counts() (ok, broken int) {
	for _, s := range set.list {
		if s.state().broken(s.first) {
			broken++
		} else {
			ok++
		}
	}
	return ok, broken
}
