package zones

// prepareSelection precomputes, once per snapshot, what the answer
// selection needs (per-pool site orders by client location). Load calls it
// last, after every pool and the geo database are in place.
func (s *Snapshot) prepareSelection() error {
	return nil
}
