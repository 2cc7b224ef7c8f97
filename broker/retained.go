package broker

import "sync"

// retainedQuota accounts retained messages to the devices that made them
// (the last writer of a topic owns it), so that one device cannot fill the
// broker's memory with retained messages: 100 topics of 250 KB each would
// otherwise be 25 MB per device.
type retainedQuota struct {
	maxCount, maxBytes int

	mu       sync.Mutex
	topics   map[string]retainedEntry
	byDevice map[string]*retainedUsage
}

type retainedEntry struct {
	owner string
	size  int
}

type retainedUsage struct{ count, bytes int }

func newRetainedQuota(maxCount, maxBytes int) *retainedQuota {
	return &retainedQuota{maxCount: maxCount, maxBytes: maxBytes,
		topics: map[string]retainedEntry{}, byDevice: map[string]*retainedUsage{}}
}

// fits reports whether device may retain size bytes on topic, counting
// what it would replace there.
func (q *retainedQuota) fits(device, topic string, size int) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	u := q.byDevice[device]
	count, bytes := 0, 0
	if u != nil {
		count, bytes = u.count, u.bytes
	}
	if prev, ok := q.topics[topic]; ok && prev.owner == device {
		count--
		bytes -= prev.size
	}
	return count+1 <= q.maxCount && bytes+size <= q.maxBytes
}

// stored records that device's message of size bytes is now retained on topic.
func (q *retainedQuota) stored(device, topic string, size int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dropLocked(topic)
	q.topics[topic] = retainedEntry{owner: device, size: size}
	u := q.byDevice[device]
	if u == nil {
		u = &retainedUsage{}
		q.byDevice[device] = u
	}
	u.count++
	u.bytes += size
}

// cleared records that topic holds no retained message any more.
func (q *retainedQuota) cleared(topic string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.dropLocked(topic)
}

func (q *retainedQuota) dropLocked(topic string) {
	prev, ok := q.topics[topic]
	if !ok {
		return
	}
	delete(q.topics, topic)
	if u := q.byDevice[prev.owner]; u != nil {
		u.count--
		u.bytes -= prev.size
		if u.count <= 0 {
			delete(q.byDevice, prev.owner)
		}
	}
}
