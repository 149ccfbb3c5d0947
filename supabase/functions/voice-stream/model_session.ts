/**
 * What a fresh model session is told first, as client events (pure): the `session.update` with
 * the caller's record in the instructions, then either the greeting's `response.create` or, for a
 * stream that continues a call, the conversation so far.
 * @module
 */
import {
  buildAssistantTextMessage,
  buildFunctionCallItem,
  buildFunctionCallOutput,
  buildInputAudioBufferAppend,
  buildResponseCreate,
  buildSessionUpdate,
  buildUserTextMessage,
  type OpenAIFunctionToolSpec,
} from "../_shared/codec/openai_realtime.ts";
import type { CallerContext } from "../_shared/store/types.ts";
import type { AudioPipeline } from "./audio_pipeline.ts";
import type { BridgeDeps } from "./bridge_deps.ts";
import type { ContinuationState } from "./handover.ts";
import {
  buildContinuationInstructions,
  buildGreetingInstructions,
  buildInstructions,
  buildResumeInstructions,
} from "./prompt.ts";

/** What the opening depends on. */
export interface SessionOpeningInput {
  config: Pick<
    BridgeDeps["config"],
    "openaiRealtimeModel" | "openaiVoice" | "openaiTranscriptionModel"
  >;
  tools: readonly OpenAIFunctionToolSpec[];
  pipeline: Pick<AudioPipeline, "modelFormat" | "inbound">;
  /** The caller's record (null: unknown caller or lookup failed). */
  context: CallerContext | null;
  /** The conversation a previous stream left, for a continued call. */
  resumed: ContinuationState | null;
  /** Wall clock, ms since the epoch (the prompt's "now"). */
  nowMs: number;
}

/** The client events to send, in order. */
export function sessionOpening(input: SessionOpeningInput): string[] {
  const { config, context, resumed, pipeline } = input;
  const org = context?.org;
  let instructions = buildInstructions(context, input.nowMs);
  if (resumed) instructions = buildContinuationInstructions(instructions, resumed);
  const sessionUpdate = buildSessionUpdate({
    model: config.openaiRealtimeModel,
    instructions,
    voice: org?.voice || config.openaiVoice,
    inputAudioFormat: pipeline.modelFormat,
    outputAudioFormat: pipeline.modelFormat,
    transcriptionModel: config.openaiTranscriptionModel,
    turnDetection: {
      threshold: org?.vad.threshold ?? 0.6,
      silenceDurationMs: org?.vad.silenceDurationMs ?? 400,
      prefixPaddingMs: org?.vad.prefixPaddingMs ?? 300,
      createResponse: true,
      interruptResponse: true,
    },
    tools: input.tools,
  });
  if (resumed) return [sessionUpdate, ...restoredConversation(resumed, instructions, pipeline)];
  return [
    sessionUpdate,
    buildResponseCreate({ instructions: buildGreetingInstructions(context) }),
  ];
}

/**
 * The conversation so far for a fresh model session: the recent turns as conversation items,
 * carried tool results as call + output, the caller's cut-off words, then a response if the
 * assistant must speak at once.
 */
export function restoredConversation(
  continuation: ContinuationState,
  instructions: string,
  pipeline: Pick<AudioPipeline, "inbound">,
): string[] {
  const events: string[] = [];
  for (const turn of continuation.recentTurns) {
    events.push(
      turn.speaker === "caller"
        ? buildUserTextMessage(turn.text)
        : buildAssistantTextMessage(turn.text),
    );
  }
  for (const tool of continuation.carriedToolResults) {
    events.push(buildFunctionCallItem(tool.callId, tool.name, tool.arguments));
    events.push(buildFunctionCallOutput(tool.callId, tool.output));
  }
  // The caller's cut-off words come first, then the audio that arrived since (early audio).
  const callerAudio = continuation.callerAudio ? pipeline.inbound(continuation.callerAudio) : null;
  if (callerAudio) events.push(buildInputAudioBufferAppend(callerAudio));
  if (continuation.respond) {
    events.push(buildResponseCreate({
      instructions: buildResumeInstructions(instructions, continuation.interrupted),
    }));
  }
  return events;
}
