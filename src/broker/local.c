/* broker/local.c — the broker of a single instance (see broker.h): nothing to
 * reach beyond this process, so a published batch goes straight to the fan-out,
 * on the publishing thread, which keeps the publish order for free. */
#include "broker/broker.h"

#include <stdlib.h>

typedef struct local_broker {
  broker_t base;
  event_sink_t downstream;
} local_broker_t;

static void local_publish(broker_t *b, event_item_t *batch) {
  local_broker_t *l = (local_broker_t *)b;
  l->downstream.publish(l->downstream.arg, batch);
}

static void local_free(broker_t *b) { free(b); }

static const broker_ops_t local_ops = {.publish = local_publish, .free = local_free};

broker_t *broker_local_new(event_sink_t downstream) {
  local_broker_t *l = calloc(1, sizeof(*l));
  if (!l) abort();
  l->base.ops = &local_ops;
  l->downstream = downstream;
  return &l->base;
}
