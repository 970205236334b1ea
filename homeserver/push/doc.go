// Package push delivers push notifications (spec: Client-Server API,
// "Push Notifications"; Push Gateway API, "POST /_matrix/push/v1/notify").
//
// It owns the push rule model (the predefined rules, a user's stored
// rules merged over them, evaluation of an event against them) and the
// delivery: a scanner that follows the event stream from a cursor stored
// in the database and stores a notification row wherever a local user's
// rules say "notify", and one sender per pusher that posts its
// notifications to the gateway, retrying with backoff while the gateway
// is down. The notifications table is each pusher's durable queue.
//
// The client API's routes (pushers, push rules, /notifications) stay with
// the client API, which uses Load, Merge and Manager.Wake. This package
// imports storage, rooms (power levels) and the clock; it never imports
// the homeserver package, sync, federation or an HTTP framework.
package push
