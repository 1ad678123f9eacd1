package sqlstore

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"slices"
	"sync"

	"github.com/dddbus/eventbus/internal/store"
)

// ChangeMark first compares the size and modification time of the
// database file and of its WAL with what they were at the last read (two
// stat calls, no SQL): every commit changes one of them, so the mark is
// read again only after something was written. The stamp is taken before
// the read, so a commit between the two is seen at the next call.
func (s *sqliteStore) ChangeMark(ctx context.Context) (store.ChangeMark, error) {
	if len(s.probeFiles) == 0 { // in memory
		return s.base.ChangeMark(ctx)
	}
	stamp := fileStamp(s.probeFiles)
	s.probe.mu.Lock()
	same := stamp != nil && s.probe.ok && slices.Equal(stamp, s.probe.stamp)
	m := s.probe.mark
	s.probe.mu.Unlock()
	if same {
		return m, nil
	}
	m, err := s.base.ChangeMark(ctx)
	if err != nil {
		return m, err
	}
	if stamp != nil {
		s.probe.mu.Lock()
		s.probe.stamp, s.probe.mark, s.probe.ok = stamp, m, true
		s.probe.mu.Unlock()
	}
	return m, nil
}

// probeCache is the last change mark and the files' stamp it was read at.
type probeCache struct {
	mu    sync.Mutex
	ok    bool
	stamp []int64
	mark  store.ChangeMark
}

// fileStamp is the size and modification time of each file (a missing WAL
// counts as size -1); nil if one cannot be read otherwise.
func fileStamp(files []string) []int64 {
	st := make([]int64, 0, 2*len(files))
	for _, f := range files {
		fi, err := os.Stat(f)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			st = append(st, -1, 0)
		case err != nil:
			return nil
		default:
			st = append(st, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return st
}
