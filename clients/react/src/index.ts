/**
 * @presenced/react: React hooks for presenced.
 *
 * ```tsx
 * <PresencedProvider options={{ url, device, token }}>
 *   <Room id="doc:42" />
 * </PresencedProvider>
 *
 * function Room({ id }: { id: string }) {
 *   const { members } = usePresence(id, { onForceLeave: (reason) => alert(`removed: ${reason}`) });
 *   const typing = useTyping(id);
 *   ...
 * }
 * ```
 */

export {
  PresencedProvider,
  useClient,
  useConnectionState,
  usePresence,
  useStatus,
  useTyping,
  useWatch,
  type PresenceResult,
  type PresencedProviderProps,
  type StatusResult,
  type TypingResult,
  type UsePresenceOptions,
} from "./hooks.js";
export { roomsOf, type ForceLeave, type RoomSnapshot, type Rooms } from "./rooms.js";
