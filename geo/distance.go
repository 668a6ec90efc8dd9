package geo

import "math"

// earthRadiusKm is the mean Earth radius (IUGG), the usual choice for
// haversine distances; the spherical model errs by at most about 0.5 %,
// far below GeoIP accuracy.
const earthRadiusKm = 6371.0088

// Distance is the great-circle distance in kilometres between two points
// given in degrees, by the haversine formula (stable for small distances,
// unlike the spherical law of cosines).
func Distance(lat1, lon1, lat2, lon2 float64) float64 {
	const rad = math.Pi / 180
	φ1, φ2 := lat1*rad, lat2*rad
	dφ := (lat2 - lat1) * rad
	dλ := (lon2 - lon1) * rad
	s1, s2 := math.Sin(dφ/2), math.Sin(dλ/2)
	h := s1*s1 + math.Cos(φ1)*math.Cos(φ2)*s2*s2
	// Rounding can push h a hair above 1 for antipodal points.
	h = min(h, 1)
	return 2 * earthRadiusKm * math.Asin(math.Sqrt(h))
}
