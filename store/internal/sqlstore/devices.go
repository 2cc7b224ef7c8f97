package sqlstore

import (
	"context"
	"database/sql"
	"errors"
	"strings"

	"github.com/fleetpki/fleetpki/pki"
	"github.com/fleetpki/fleetpki/store"
)

const deviceColumns = `id, status, metadata, created_at, updated_at, kind`

func scanDevice(r rowScanner) (pki.Device, error) {
	var d pki.Device
	var status, kind string
	err := r.Scan(&d.ID, &status, jsonCol{&d.Metadata}, timeCol{&d.CreatedAt}, timeCol{&d.UpdatedAt}, &kind)
	d.Status, d.Kind = pki.DeviceStatus(status), pki.DeviceKind(kind)
	if len(d.Metadata) == 0 {
		d.Metadata = nil
	}
	return d, err
}

// GetDevice returns the device.
func (s *Store) GetDevice(ctx context.Context, id string) (pki.Device, error) {
	d, err := scanDevice(s.rdb.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices WHERE id = $1`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return pki.Device{}, pki.Errorf(pki.NotFound, "no device %q", id)
	}
	if err != nil {
		return pki.Device{}, s.wrap(err, "get device")
	}
	return d, nil
}

// ListDevices lists devices in id order.
func (s *Store) ListDevices(ctx context.Context, f store.DeviceFilter) (store.Page[pki.Device], error) {
	var page store.Page[pki.Device]
	n, err := limit(f.Limit)
	if err != nil {
		return page, err
	}
	after, err := decodeCursor("d", f.Cursor)
	if err != nil {
		return page, err
	}
	var a args
	var where []string
	if after != "" {
		where = append(where, "id > "+a.add(after))
	}
	switch f.Status {
	case "":
	case pki.DeviceActive, pki.DeviceRevoked:
		where = append(where, "status = "+a.add(string(f.Status)))
	default:
		return page, pki.Errorf(pki.Invalid, "unknown device status %q", f.Status)
	}
	switch f.Kind {
	case "":
	case pki.KindDevice, pki.KindService:
		where = append(where, "kind = "+a.add(string(f.Kind)))
	default:
		return page, pki.Errorf(pki.Invalid, "unknown device kind %q", f.Kind)
	}
	if f.IDPrefix != "" {
		// A range instead of LIKE: no escaping of % and _, and it uses the primary key.
		where = append(where, "id >= "+a.add(f.IDPrefix), "id < "+a.add(f.IDPrefix+"\U0010FFFF"))
	}
	if f.MetaKey != "" {
		if err := pki.ValidateMetadata(map[string]string{f.MetaKey: f.MetaValue}); err != nil {
			return page, err
		}
		where = append(where, s.d.MetadataMatch(a.add, f.MetaKey, f.MetaValue))
	}
	q := `SELECT ` + deviceColumns + ` FROM devices`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY id LIMIT " + a.add(n+1)
	rows, err := s.rdb.QueryContext(ctx, q, a...)
	if err != nil {
		return page, s.wrap(err, "list devices")
	}
	defer rows.Close()
	for rows.Next() {
		d, err := scanDevice(rows)
		if err != nil {
			return page, s.wrap(err, "list devices: scan")
		}
		if len(page.Items) == n {
			page.Next = encodeCursor("d", page.Items[n-1].ID)
			break
		}
		page.Items = append(page.Items, d)
	}
	return page, s.wrap(rows.Err(), "list devices")
}
