package store

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/redis/go-redis/v9"
)

// RouteRedisLog sends the Redis client's own messages (pool and dial
// trouble, cluster and Sentinel topology changes), which it would print as
// plain text on stderr, through log as structured warnings. The client
// library has one logger per process: the last call wins.
func RouteRedisLog(log *slog.Logger) {
	if log == nil {
		return
	}
	redis.SetLogger(redisLog{log})
}

// redisLog adapts slog to the Redis client's Printf-style logger.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	msg := strings.TrimSpace(fmt.Sprintf(format, v...))
	l.log.WarnContext(ctx, "redis client", "detail", strings.TrimPrefix(msg, "redis: "))
}
