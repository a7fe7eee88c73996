package parse

import (
	"bytes"
	"math"
	"strconv"
	"time"
	"unicode/utf8"
)

// AppendJSON appends rec as one JSON object, without a newline, in kvaudit's
// normalized event shape, and returns the extended buffer:
//
//	{"time":…,"vault":…,"subscriptionId":…,"resourceGroup":…,"resourceId":…,
//	 "operationName":…,"operationVersion":…,"category":…,"resultType":…,
//	 "resultSignature":…,"resultDescription":…,"durationMs":<number|null>,
//	 "callerIpAddress":…,"correlationId":…,
//	 "identity":{"objectId":…,"upn":…,"appId":…,"claims":<raw|null>},
//	 "httpStatusCode":<int>,"status":<int>,"requestUri":…,"id":…,
//	 "objectName":…,"objectType":…,"clientInfo":…,"tlsVersion":…,
//	 "properties":<raw|null>,"extra":<raw|null>,
//	 "source":{"account":…,"blob":…,"offset":<int>}}
//
// source names the record's logs account (Account) and its blob's path
// there (Blob without the account part of its identity).
//
// Every key is always present, in this order: absent strings are "",
// absent raw values null, durationMs null unless HasDuration (or not
// finite). Strings are escaped, invalid UTF-8 becoming U+FFFD.
//
// Raw values (Properties, Extra, Identity.Claims) are checked and written
// on one line, with invalid UTF-8 replaced; one that is not valid JSON (not
// from Next, say cut to fit a store) is written as null. The output is
// always one line of valid JSON in valid UTF-8.
func AppendJSON(dst []byte, rec *Record) []byte {
	dst = append(dst, `{"time":"`...)
	dst = appendTime(dst, rec.Time)
	dst = append(dst, `","vault":`...)
	dst = appendString(dst, rec.Vault)
	dst = append(dst, `,"subscriptionId":`...)
	dst = appendString(dst, rec.SubscriptionID)
	dst = append(dst, `,"resourceGroup":`...)
	dst = appendString(dst, rec.ResourceGroup)
	dst = append(dst, `,"resourceId":`...)
	dst = appendString(dst, rec.ResourceID)
	dst = append(dst, `,"operationName":`...)
	dst = appendString(dst, rec.OperationName)
	dst = append(dst, `,"operationVersion":`...)
	dst = appendString(dst, rec.OperationVersion)
	dst = append(dst, `,"category":`...)
	dst = appendString(dst, rec.Category)
	dst = append(dst, `,"resultType":`...)
	dst = appendString(dst, rec.ResultType)
	dst = append(dst, `,"resultSignature":`...)
	dst = appendString(dst, rec.ResultSignature)
	dst = append(dst, `,"resultDescription":`...)
	dst = appendString(dst, rec.ResultDescription)
	dst = append(dst, `,"durationMs":`...)
	if rec.HasDuration {
		dst = appendFloat(dst, rec.DurationMs)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"callerIpAddress":`...)
	dst = appendString(dst, rec.CallerIPAddress)
	dst = append(dst, `,"correlationId":`...)
	dst = appendString(dst, rec.CorrelationID)
	dst = append(dst, `,"identity":{"objectId":`...)
	dst = appendString(dst, rec.Identity.ObjectID)
	dst = append(dst, `,"upn":`...)
	dst = appendString(dst, rec.Identity.UPN)
	dst = append(dst, `,"appId":`...)
	dst = appendString(dst, rec.Identity.AppID)
	dst = append(dst, `,"claims":`...)
	dst = appendRaw(dst, rec.Identity.Claims)
	dst = append(dst, `},"httpStatusCode":`...)
	dst = strconv.AppendInt(dst, int64(rec.HTTPStatusCode), 10)
	dst = append(dst, `,"status":`...)
	dst = strconv.AppendInt(dst, int64(rec.Status), 10)
	dst = append(dst, `,"requestUri":`...)
	dst = appendString(dst, rec.RequestURI)
	dst = append(dst, `,"id":`...)
	dst = appendString(dst, rec.ID)
	dst = append(dst, `,"objectName":`...)
	dst = appendString(dst, rec.ObjectName)
	dst = append(dst, `,"objectType":`...)
	dst = appendString(dst, rec.ObjectType)
	dst = append(dst, `,"clientInfo":`...)
	dst = appendString(dst, rec.ClientInfo)
	dst = append(dst, `,"tlsVersion":`...)
	dst = appendString(dst, rec.TLSVersion)
	dst = append(dst, `,"properties":`...)
	dst = appendRaw(dst, rec.Properties)
	dst = append(dst, `,"extra":`...)
	dst = appendRaw(dst, rec.Extra)
	_, path := SplitBlobID(rec.Blob)
	dst = append(dst, `,"source":{"account":`...)
	dst = appendString(dst, rec.Account)
	dst = append(dst, `,"blob":`...)
	dst = appendString(dst, path)
	dst = append(dst, `,"offset":`...)
	dst = strconv.AppendInt(dst, rec.Offset, 10)
	dst = append(dst, "}}"...)
	return dst
}

// FormatTime formats t in UTC with TimeLayout: seven fractional digits,
// truncated (not rounded) to 100 ns, as Key Vault logs times.
func FormatTime(t time.Time) string {
	var buf [len(TimeLayout) + 8]byte
	return string(appendTime(buf[:0], t))
}

func appendTime(dst []byte, t time.Time) []byte {
	// Civil date from days since 1970 (H. Hinnant's algorithm): one
	// computation instead of time.Time's Date and Clock.
	sec := t.Unix()
	days := sec / 86400
	if sec%86400 < 0 {
		days--
	}
	sod := int(sec - days*86400)
	z := days + 719468
	era := z / 146097
	if z < 0 && z%146097 != 0 {
		era--
	}
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	day := int(doy - (153*mp+2)/5 + 1)
	month := int(mp + 3)
	if month > 12 {
		month -= 12
	}
	year := yoe + era*400
	if month <= 2 {
		year++
	}
	if year < 0 || year > 9999 {
		return t.UTC().AppendFormat(dst, TimeLayout)
	}
	y := int(year)
	hour, minute, second := sod/3600, sod/60%60, sod%60
	dst = append(dst,
		byte('0'+y/1000), byte('0'+y/100%10), byte('0'+y/10%10), byte('0'+y%10), '-',
		byte('0'+month/10), byte('0'+month%10), '-',
		byte('0'+day/10), byte('0'+day%10), 'T',
		byte('0'+hour/10), byte('0'+hour%10), ':',
		byte('0'+minute/10), byte('0'+minute%10), ':',
		byte('0'+second/10), byte('0'+second%10), '.')
	ticks := t.Nanosecond() / 100
	var frac [7]byte
	for i := 6; i >= 0; i-- {
		frac[i] = byte('0' + ticks%10)
		ticks /= 10
	}
	dst = append(dst, frac[:]...)
	return append(dst, 'Z')
}

// appendFloat writes f as encoding/json does; NaN and ±Inf, which JSON
// cannot hold, as null.
func appendFloat(dst []byte, f float64) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	dst = strconv.AppendFloat(dst, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(dst); n >= 4 && dst[n-4] == 'e' && dst[n-3] == '-' && dst[n-2] == '0' {
			dst[n-2] = dst[n-1]
			dst = dst[:n-1]
		}
	}
	return dst
}

// appendRaw writes a raw JSON value on one line and in valid UTF-8; null
// when it is empty or not valid JSON.
func appendRaw(dst, raw []byte) []byte {
	if len(raw) == 0 || !validJSON(raw) {
		return append(dst, "null"...)
	}
	// In valid JSON, CR and LF can only be whitespace between tokens
	// (pretty-printed legacy documents): drop all such whitespace then.
	compact := raw[0] <= ' ' || raw[len(raw)-1] <= ' ' || bytes.IndexByte(raw, '\n') >= 0 || bytes.IndexByte(raw, '\r') >= 0
	fix := !utf8.Valid(raw)
	if !compact && !fix {
		return append(dst, raw...)
	}
	return appendClean(dst, raw, compact, fix)
}

const hexDigits = "0123456789abcdef"

// AppendString appends s to dst as a JSON string literal, with the same
// escaping as AppendJSON: the one string encoder the project uses.
func AppendString(dst []byte, s string) []byte { return appendString(dst, s) }

// appendString appends s as a JSON string. Invalid UTF-8 becomes U+FFFD;
// U+2028 and U+2029 are escaped so the output is safe in JavaScript too.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if i = skipPlainString(s, i); i >= len(s) {
			break
		}
		c := s[i]
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
