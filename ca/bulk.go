package ca

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/fleetpki/fleetpki/pki"
)

// BulkStore is what bulk revocation needs from persistence.
type BulkStore interface {
	PreviewMatching(ctx context.Context, sel pki.Selector, now time.Time) (pki.MatchSet, error)
	CreateRevocationJob(ctx context.Context, job pki.RevocationJob, ev pki.AuditEvent) error
	RevokeJobBatch(ctx context.Context, job pki.RevocationJob, at time.Time, limit int) ([]pki.CertRecord, bool, error)
	OpenRevocationJobs(ctx context.Context) ([]pki.RevocationJob, error)
	GetRevocationJob(ctx context.Context, id string) (pki.RevocationJob, error)
}

// Audit actions of bulk revocations (each certificate gets its own
// certificate.revoke event too).
const (
	ActionBulkRevokeStart = "revocation_job.start"
)

// Bulk revocation pacing: a batch is one transaction (its audit events
// hold the chain's lock, so enrollments wait at most one batch); a job
// answers synchronously when it ends within bulkWait, else it runs on.
const (
	bulkBatch = 1000
	bulkWait  = 10 * time.Second
	// bulkPublish is how long a batch's revocation events may wait for a
	// slow subscriber before they are dropped for it (and counted).
	bulkPublish = 2 * time.Second
)

// jobRun is a job handed to the runner.
type jobRun struct {
	job  pki.RevocationJob
	done chan struct{}
	err  error
}

// bulkRunner runs jobs one at a time, in the component RunJobs.
type bulkRunner struct {
	queue   chan *jobRun
	running atomic.Bool
}

// PreviewMatching returns what sel matches now: the set a revocation
// with its hash would revoke.
func (c *CA) PreviewMatching(ctx context.Context, sel pki.Selector) (pki.MatchSet, error) {
	if c.bulk == nil {
		return pki.MatchSet{}, pki.Errorf(pki.Unavailable, "bulk revocation is not configured")
	}
	if err := sel.Validate(); err != nil {
		return pki.MatchSet{}, err
	}
	m, err := c.bulk.PreviewMatching(ctx, sel, c.clock.Now())
	if err != nil {
		return pki.MatchSet{}, fmt.Errorf("preview %s: %w", sel, err)
	}
	return m, nil
}

// RevokeMatching revokes every valid certificate of the devices sel
// matches, provided the set is still the one whose hash the operator
// previewed (pki.Conflict otherwise, and nothing is revoked). The job is
// recorded first and runs in batches of bulkBatch certificates, one audit
// event per certificate; it returns when the job is done or after
// bulkWait, with the job's state then (a job that runs on, or is cut short
// by a crash, finishes in RunJobs).
func (c *CA) RevokeMatching(ctx context.Context, sel pki.Selector, expectSetHash string, reason pki.RevocationReason, actor pki.Actor) (pki.RevocationJob, error) {
	if !reason.Valid() {
		return pki.RevocationJob{}, pki.Errorf(pki.Invalid, "revocation reason %d (%s) is not allowed", int(reason), reason)
	}
	m, err := c.PreviewMatching(ctx, sel)
	if err != nil {
		return pki.RevocationJob{}, err
	}
	if m.Hash != expectSetHash {
		return pki.RevocationJob{}, pki.Errorf(pki.Conflict, "the devices matching %s changed since the preview (now %d devices, %d certificates); nothing was revoked: preview again",
			sel, m.Devices, m.Certificates)
	}
	now := c.clock.Now().UTC()
	job := pki.RevocationJob{ID: randomJobID(), Selector: sel, SetHash: m.Hash, Reason: reason, Actor: actor, Created: now}
	ev := pki.AuditEvent{Time: now, Actor: actor, Action: ActionBulkRevokeStart, Target: job.ID,
		Details: map[string]string{"selector": sel.String(), "set_hash": m.Hash, "reason": reason.String(),
			"devices": fmt.Sprint(m.Devices), "certificates": fmt.Sprint(m.Certificates)}}
	if err := c.bulk.CreateRevocationJob(ctx, job, ev); err != nil {
		return pki.RevocationJob{}, fmt.Errorf("bulk revocation: %w", err)
	}
	c.log.InfoContext(ctx, "bulk revocation started", "job", job.ID, "selector", sel.String(), "devices", m.Devices, "certificates", m.Certificates)
	if !c.jobs.running.Load() {
		err = c.runJob(ctx, job) // no runner (a CLI): run here, to the end
	} else {
		run := &jobRun{job: job, done: make(chan struct{})}
		select {
		case c.jobs.queue <- run:
		case <-ctx.Done():
			return job, fmt.Errorf("bulk revocation: %w", ctx.Err())
		}
		t := time.NewTimer(bulkWait)
		defer t.Stop()
		select {
		case <-run.done:
			err = run.err
		case <-t.C:
		case <-ctx.Done():
		}
	}
	if err != nil {
		return job, err
	}
	return c.Job(context.WithoutCancel(ctx), job.ID)
}

// Job returns a bulk revocation job's state.
func (c *CA) Job(ctx context.Context, id string) (pki.RevocationJob, error) {
	if c.bulk == nil {
		return pki.RevocationJob{}, pki.Errorf(pki.Unavailable, "bulk revocation is not configured")
	}
	j, err := c.bulk.GetRevocationJob(ctx, id)
	if err != nil {
		return pki.RevocationJob{}, fmt.Errorf("revocation job %s: %w", id, err)
	}
	return j, nil
}

// RunJobs runs bulk revocation jobs until ctx ends: first those a crash
// left unfinished, then each RevokeMatching hands over.
func (c *CA) RunJobs(ctx context.Context) error {
	if c.bulk == nil {
		return nil
	}
	c.jobs.running.Store(true)
	defer c.jobs.running.Store(false)
	open, err := c.bulk.OpenRevocationJobs(ctx)
	if err != nil {
		c.log.ErrorContext(ctx, "listing unfinished bulk revocations failed", "err", err)
	}
	for _, j := range open {
		c.log.InfoContext(ctx, "resuming a bulk revocation", "job", j.ID, "selector", j.Selector.String(), "revoked_so_far", j.Revoked)
		if err := c.runJob(ctx, j); err != nil && ctx.Err() == nil {
			c.log.ErrorContext(ctx, "bulk revocation failed; it resumes at the next start", "job", j.ID, "err", err)
		}
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case run := <-c.jobs.queue:
			run.err = c.runJob(ctx, run.job)
			if run.err != nil && ctx.Err() == nil {
				c.log.ErrorContext(ctx, "bulk revocation failed; it resumes at the next start", "job", run.job.ID, "err", run.err)
			}
			close(run.done)
		}
	}
}

// runJob revokes the job's set batch by batch, publishing each batch's
// revocations after its commit.
func (c *CA) runJob(ctx context.Context, job pki.RevocationJob) error {
	total := 0
	for {
		at := c.clock.Now().UTC()
		revoked, done, err := c.bulk.RevokeJobBatch(ctx, job, at, bulkBatch)
		if err != nil {
			return fmt.Errorf("bulk revocation %s after %d certificates: %w", job.ID, total, err)
		}
		if done {
			c.log.InfoContext(ctx, "bulk revocation done", "job", job.ID, "revoked", job.Revoked+int64(total))
			return nil
		}
		total += len(revoked)
		evs := make([]pki.RevocationEvent, len(revoked))
		for i, rec := range revoked {
			evs[i] = c.revocationEvent(rec, job.Reason, at)
		}
		c.feed.publishAll(evs, bulkPublish)
	}
}

func randomJobID() string { return "job-" + newSerial().Text(16) }
